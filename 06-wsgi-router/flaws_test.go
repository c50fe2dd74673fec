package wsgirouter

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each TestArticleFlaw test runs one check against two servers: the
// article's design, kept in testdata/article_server.py (our own Python,
// written the way the article writes its servers), and ours. The check
// fails on the article's and passes on ours. The Python half skips unless
// python3 is there, or fails if RPC_INTEROP=required.

// articleSecret is in the file that sits next to the web folder, outside
// it: no request should ever read it.
const articleSecret = "the database password is hunter2\n"

// articleSite makes a folder laid out as the article's server expects:
// www/ with a page, www/bin/ with a module that is not a page, and a
// secret file outside www/. It returns the folder.
func articleSite(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"www/index.html": "<h1>index</h1>\n",
		// A maintenance script kept beside the pages, in the folder the
		// article's server imports from. Importing it runs it: it leaves
		// a mark, so a test can see that it ran.
		"www/bin/reset_db.py": "open('reset_db_ran', 'w').write('yes')\n",
		"secret.txt":          articleSecret,
	}
	for name, text := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	}
	return dir
}

// startArticleServer runs testdata/article_server.py in site on a free
// port of host ("" binds every interface, as the article does).
func startArticleServer(t *testing.T, site, host string) string {
	t.Helper()
	py := rpctest.Python(t)
	script, err := filepath.Abs(filepath.Join("testdata", "article_server.py"))
	require.NoError(t, err)
	args := []string{script, "0"}
	if host != "" {
		args = append(args, host)
	}
	cmd := exec.Command(py, args...)
	cmd.Dir = site // it serves ./www and imports from ./www/bin
	return rpctest.StartServer(t, cmd)
}

// startOurSite runs our Server on the same site: the demo application
// over site/www (through os.Root, as -www DIR does), with two pages
// more, /echo and /twice, that do what the article server's do.
func startOurSite(t *testing.T, site string) string {
	t.Helper()
	return serve(t, NewServer(ourSiteApp(t, site)), rpctest.Listen(t))
}

func ourSiteApp(t *testing.T, site string) *Router {
	t.Helper()
	root, err := os.OpenRoot(filepath.Join(site, "www"))
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	demo := NewApp(Service{Files: root.FS()})
	app, err := NewRouter(demo,
		Route{AnyMethod, "/echo", AppFunc(flawEchoPage)},
		Route{"GET", "/twice", AppFunc(flawTwicePage)},
	)
	require.NoError(t, err)
	return app
}

// flawEchoPage answers with what the server read: each header field as
// name=value, a line each, then the body.
func flawEchoPage(env *Environ, start StartResponse) []byte {
	_ = start(http.StatusOK, nil)
	var b strings.Builder
	for _, f := range env.Header {
		fmt.Fprintf(&b, "%s=%s\n", strings.ToLower(f.Name), f.Value)
	}
	fmt.Fprintf(&b, "body=%s\n", env.Body)
	return []byte(b.String())
}

// flawTwicePage starts a 201, then tries to start a 404, and says whether the
// second start was refused. (A 201, not the default 200, so that a server
// that lost the first status would show it.)
func flawTwicePage(env *Environ, start StartResponse) []byte {
	if err := start(http.StatusCreated, Header{{"X-Start", "first"}}); err != nil {
		return []byte("first start refused: " + err.Error() + "\n")
	}
	if err := start(http.StatusNotFound, Header{{"X-Start", "second"}}); errors.Is(err, ErrStarted) {
		return []byte("second start refused\n")
	}
	return []byte("second start accepted\n")
}

// flawExchange sends request on a new connection and reads one answer and its
// body. The requests ask to close, and the article's server closes after
// each answer anyway, so the body ends where the stream does if nothing
// else frames it.
func flawExchange(addr, request string) (*http.Response, string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(rpctest.Backstop)); err != nil {
		return nil, "", err
	}
	if _, err := io.WriteString(conn, request); err != nil {
		return nil, "", err
	}
	return readFlawAnswer(bufio.NewReader(conn))
}

func readFlawAnswer(br *bufio.Reader) (*http.Response, string, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// checkReadsLongHead sends a request whose head (3 KB of Cookie) is longer
// than one recv(2048), in one write, and wants the echo of every field.
// The article's server reads 2048 bytes, answers from a cut head, and
// closes with the rest unread: the kernel then resets the connection, and
// the reset may destroy the answer. Either way the check fails, so the
// outcome does not depend on the timing.
func checkReadsLongHead(addr string) error {
	cookie := strings.Repeat("c", 3000)
	resp, body, err := flawExchange(addr, "GET /echo HTTP/1.1\r\nHost: x\r\nCookie: "+cookie+"\r\nX-Last: yes\r\nConnection: close\r\n\r\n")
	switch {
	case err != nil:
		return fmt.Errorf("no whole answer: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case !strings.Contains(body, "\ncookie="+cookie+"\n"):
		return fmt.Errorf("the Cookie field was cut: the echo is %d bytes", len(body))
	case !strings.Contains(body, "\nx-last=yes\n"):
		return errors.New("the field after the Cookie was lost")
	}
	return nil
}

func TestArticleFlawLongHead(t *testing.T) {
	assert.NoError(t, checkReadsLongHead(startOurSite(t, articleSite(t))))

	err := checkReadsLongHead(startArticleServer(t, articleSite(t), "127.0.0.1"))
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
}

// checkWaitsForWholeHead sends a head in two writes and wants one answer,
// to the whole of it. After the first write it waits up to quiet for an
// answer that must not come yet: a server that answers then took part of
// a request for all of it.
//
// quiet is a bound on how long the check looks for something that should
// not happen, not a synchronisation: a server that waits for the rest
// gives no byte, however long the check waits. The article's server
// answers the first part whatever the bound, so it is given the Backstop:
// it answers at once, and a loaded machine cannot make it seem to wait.
// The bound given for ours only decides how long the test takes.
func checkWaitsForWholeHead(addr string, quiet time.Duration) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Part: one\r\n"); err != nil {
		return err
	}
	if err := conn.SetReadDeadline(time.Now().Add(quiet)); err != nil {
		return err
	}
	if _, err := br.Peek(1); err == nil {
		resp, body, err := readFlawAnswer(br)
		if err != nil {
			return fmt.Errorf("answered before the head ended: %w", err)
		}
		return fmt.Errorf("answered %d before the head ended: %q", resp.StatusCode, body)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("after half a head: %w", err)
	}
	if err := conn.SetDeadline(time.Now().Add(rpctest.Backstop)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "X-Part: two\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, body, err := readFlawAnswer(br)
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK || !strings.Contains(body, "x-part=one\nx-part=two\n"):
		return fmt.Errorf("answered %d %q, not the echo of both parts", resp.StatusCode, body)
	}
	return nil
}

func TestArticleFlawHeadInTwoWrites(t *testing.T) {
	assert.NoError(t, checkWaitsForWholeHead(startOurSite(t, articleSite(t)), 200*time.Millisecond))

	err := checkWaitsForWholeHead(startArticleServer(t, articleSite(t), "127.0.0.1"), rpctest.Backstop)
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
	assert.Contains(t, err.Error(), "before the head ended")
}

// checkKeepsBodyOutOfHead posts a body whose line looks like a header
// field, and wants it kept in the body. The article's parser splits the
// whole request on CR LF and filters out the empty strings, so the blank
// line that ends the head is gone and the body's line becomes a field.
func checkKeepsBodyOutOfHead(addr string) error {
	const body = "X-Injected: yes"
	resp, echo, err := flawExchange(addr, fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case strings.Contains(echo, "\nx-injected=yes\n"):
		return fmt.Errorf("the body's line was read as a header field: %q", echo)
	case !strings.Contains(echo, "\nbody="+body+"\n"):
		return fmt.Errorf("the body was not kept: %q", echo)
	}
	return nil
}

func TestArticleFlawBodyLineAsField(t *testing.T) {
	assert.NoError(t, checkKeepsBodyOutOfHead(startOurSite(t, articleSite(t))))

	err := checkKeepsBodyOutOfHead(startArticleServer(t, articleSite(t), "127.0.0.1"))
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
}

// checkStaysInFolder asks for the file beside the web folder, through
// "..", and wants a refusal that does not hold the file.
func checkStaysInFolder(addr string) error {
	resp, body, err := flawExchange(addr, "GET /../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	switch {
	case err != nil:
		return err
	case strings.Contains(body, articleSecret):
		return fmt.Errorf("answered %d with the file outside the web folder", resp.StatusCode)
	case resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound:
		return fmt.Errorf("answered %d, not 400 or 404", resp.StatusCode)
	}
	return nil
}

func TestArticleFlawTraversal(t *testing.T) {
	assert.NoError(t, checkStaysInFolder(startOurSite(t, articleSite(t))))

	err := checkStaysInFolder(startArticleServer(t, articleSite(t), "127.0.0.1"))
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
}

// checkRunsNoCodeNamedByURL asks for /reset_db.py, the name of a script
// that is no page, and wants it not run. The article's server imports the
// module the path names, and importing runs it. Ours has a route table:
// the path picks a line of it, never code it does not name.
func checkRunsNoCodeNamedByURL(addr, site string) error {
	resp, _, err := flawExchange(addr, "GET /reset_db.py HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if err != nil {
		return err
	}
	// The answer has been read to its end: anything the request ran has
	// run by now.
	if _, err := os.Stat(filepath.Join(site, "reset_db_ran")); err == nil {
		return fmt.Errorf("the URL ran www/bin/reset_db.py (answer %d)", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("answered %d, not 404", resp.StatusCode)
	}
	return nil
}

func TestArticleFlawModuleNamedByURL(t *testing.T) {
	site := articleSite(t)
	assert.NoError(t, checkRunsNoCodeNamedByURL(startOurSite(t, site), site))

	site = articleSite(t)
	err := checkRunsNoCodeNamedByURL(startArticleServer(t, site, "127.0.0.1"), site)
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
}

// checkStartsOnce asks for /twice, a page that starts a 201 and then
// tries to start a 404, and wants the second start refused with
// ErrStarted and the first one's status and fields kept: WSGI's rule, the
// answer starts once. The article's start_response overwrites what the
// first call set, and the answer goes out as a 404.
func checkStartsOnce(addr string) error {
	resp, body, err := flawExchange(addr, "GET /twice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusCreated || !slices.Equal(resp.Header.Values("X-Start"), []string{"first"}) || body != "second start refused\n":
		return fmt.Errorf("answered %d, X-Start %q, %q: the second start took", resp.StatusCode, resp.Header.Values("X-Start"), body)
	}
	return nil
}

// TestArticleFlawStartedTwice checks the rule on both our servers first,
// so that it runs where Python is missing too, then on the article's.
func TestArticleFlawStartedTwice(t *testing.T) {
	for server, addr := range bothServersOf(t, ourSiteApp(t, articleSite(t))) {
		assert.NoError(t, checkStartsOnce(addr), server)
	}

	err := checkStartsOnce(startArticleServer(t, articleSite(t), "127.0.0.1"))
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
}

// heldServer is what checkServesWhileOneHolds leaves: the connection that
// holds the server, and the second client's.
type heldServer struct {
	first, second net.Conn
	secondReader  *bufio.Reader
}

// checkServesWhileOneHolds connects a first client that sends nothing,
// then a second that sends a whole request, and wants the second
// answered while the first holds its connection.
//
// wait is a bound on how long the check looks for the second answer, not
// a synchronisation. The article's server is blocked in recv on the first
// connection, which never sends: it cannot answer the second however long
// the check waits, so a short bound gives the same outcome as a long one,
// and a loaded machine can only make the wait longer. Ours answers at
// once, so it gets the Backstop.
func checkServesWhileOneHolds(t *testing.T, addr string, wait time.Duration) (*heldServer, error) {
	t.Helper()
	first, _ := rawConn(t, addr)
	second, br := rawConn(t, addr) // dialled after the first, so behind it in the accept queue
	held := &heldServer{first: first, second: second, secondReader: br}
	_, err := io.WriteString(second, "GET /time HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, second.SetReadDeadline(time.Now().Add(wait)))
	resp, _, err := readFlawAnswer(br)
	if err != nil {
		return held, fmt.Errorf("no answer to a second client within %v while a first one held its connection: %w", wait, err)
	}
	if resp.StatusCode != http.StatusOK {
		return held, fmt.Errorf("the second client got %d", resp.StatusCode)
	}
	return held, nil
}

func TestArticleFlawOneClientAtATime(t *testing.T) {
	// Our server would close the silent connection after HeaderTimeout,
	// and a server that served one connection at a time would then get
	// to the second: let the silent one outlast the check.
	srv := NewServer(ourSiteApp(t, articleSite(t)))
	srv.HeaderTimeout = 2 * rpctest.Backstop
	_, err := checkServesWhileOneHolds(t, serve(t, srv, rpctest.Listen(t)), rpctest.Backstop)
	assert.NoError(t, err)

	held, err := checkServesWhileOneHolds(t, startArticleServer(t, articleSite(t), "127.0.0.1"), 300*time.Millisecond)
	require.Error(t, err, "the article's server was expected to fail this check")
	t.Logf("the article's server: %v", err)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)

	// The second request was not lost, only queued: once the first client
	// leaves, the article's server gets to it.
	require.NoError(t, held.first.Close())
	require.NoError(t, held.second.SetReadDeadline(time.Now().Add(rpctest.Backstop)))
	resp, body, err := readFlawAnswer(held.secondReader)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
}

// TestArticleFlawBindsEveryInterface starts the article's server with its
// default host, "", and sees it listen on every interface: anyone who can
// reach the machine reaches the server. Our command's -addr defaults to
// 127.0.0.1:8080, a port of the loopback interface only.
func TestArticleFlawBindsEveryInterface(t *testing.T) {
	addr := startArticleServer(t, articleSite(t), "")
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	assert.True(t, net.ParseIP(host).IsUnspecified(), "the article's server listens on %s", addr)

	goCmd, err := exec.LookPath("go")
	require.NoError(t, err, "our half runs `go run ./cmd/server -h`")
	usage, _ := exec.Command(goCmd, "run", "./cmd/server", "-h").CombinedOutput()
	assert.Contains(t, string(usage), `"127.0.0.1:8080"`, "the default of -addr, in the usage:\n%s", usage)
}

// The smuggling test sends the same bytes to our server and to net/http's,
// each running the same application (through Handler), and to a model of
// the proxy that might stand in front of either.

// smuggled is the request each trick hides in what a proxy takes for the
// body of the request before it.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

// smuggleApp says which request it served, and with what body.
var smuggleApp = AppFunc(func(env *Environ, start StartResponse) []byte {
	_ = start(http.StatusOK, nil)
	return fmt.Appendf(nil, "served %s %s, body %q", env.Method, env.Path, env.Body)
})

// frontEndRequests counts the requests that a simple proxy reads from raw:
// one that ends lines at CR LF only, knows nothing of folded lines, and
// frames a body by Content-Length alone. Proxies have been written like
// this, and each rule is one an attacker can play against a server that
// reads the bytes another way.
func frontEndRequests(raw string) int {
	n := 0
	for raw != "" {
		head, rest, ok := strings.Cut(raw, "\r\n\r\n")
		if !ok {
			return n
		}
		n++
		length := 0
		for _, line := range strings.Split(head, "\r\n")[1:] {
			if name, value, _ := strings.Cut(line, ":"); strings.EqualFold(name, "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(value))
			}
		}
		raw = rest[min(length, len(rest)):]
	}
	return n
}

// summary says what one answer was: "served METHOD PATH" for the
// application's, the status alone for a refusal.
func summary(a wireAnswer) string {
	if served, ok := strings.CutPrefix(a.body, "served "); ok {
		method, rest, _ := strings.Cut(served, " ")
		path, _, _ := strings.Cut(rest, ",")
		return "served " + method + " " + path
	}
	return strconv.Itoa(a.status)
}

// TestSmugglingOnBothServers shows request smuggling (请求走私) on the
// wire. Each request below hides `GET /smuggled` where one reader sees a
// body and another sees a second request. The proxy model reads one
// request; net/http (Go 1.26) reads two, and serves /smuggled, a request
// the proxy never saw and so never checked; ours refuses the whole with
// 400 (or 501), and closes the connection, so nothing after it is read.
// Where net/http refuses too, the table says so.
//
// If a later Go changes what net/http does, this test fails on the
// net/http rows: the table, and the lesson's paragraph on smuggling, then
// need the new behaviour.
func TestSmugglingOnBothServers(t *testing.T) {
	chunks := "0\r\n\r\n" + smuggled // an empty chunked body, then the hidden request
	withLength := func(head string) string {
		return fmt.Sprintf(head, len(chunks)) + chunks
	}
	for _, tc := range []struct {
		name, request string
		front         int      // the requests the proxy model reads; 0: not modelled
		ours          int      // our status
		netHTTP       []string // net/http's answers, by summary
	}{
		// Framing that two readers can disagree on, where net/http
		// serves the hidden request.
		{"Content-Length, then Transfer-Encoding (CL.TE)",
			withLength("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"),
			1, 400, []string{"served POST /", "served GET /smuggled"}},
		{"Transfer-Encoding, then Content-Length (TE.CL)",
			withLength("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n"),
			1, 400, []string{"served POST /", "served GET /smuggled"}},
		{"Transfer-Encoding folded onto a second line",
			withLength("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"),
			1, 400, []string{"served POST /", "served GET /smuggled"}},
		{"Transfer-Encoding after a bare LF, inside another field for the proxy",
			withLength("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nX-Note: a\nTransfer-Encoding: chunked\r\n\r\n"),
			1, 400, []string{"served POST /", "served GET /smuggled"}},
		{"Transfer-Encoding after a tab",
			withLength("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding:\tchunked\r\n\r\n"),
			1, 400, []string{"served POST /", "served GET /smuggled"}},
		// The other way round: HTTP/1.0 has no chunks, so net/http frames
		// by Content-Length, where a proxy that honours the
		// Transfer-Encoding reads two requests.
		{"Transfer-Encoding in HTTP/1.0",
			withLength("POST / HTTP/1.0\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"),
			0, 400, []string{"served POST /"}},
		// Tricks net/http refuses too.
		{"Content-Length twice, two values",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello" + smuggled, 0, 400, []string{"400"}},
		{"Content-Length with a sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello" + smuggled, 0, 400, []string{"400"}},
		{"Content-Length as a list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello" + smuggled, 0, 400, []string{"400"}},
		{"a space before the colon", withLength("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding : chunked\r\n\r\n"),
			1, 400, []string{"400"}},
		{"Transfer-Encoding twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
			0, 501, []string{"501"}},
		{"Transfer-Encoding not quite chunked", withLength("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: xchunked\r\n\r\n"),
			1, 400, []string{"501"}},
		{"a bare CR in a chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n" + chunks,
			0, 400, []string{"400"}},
		{"a chunk size ended by LF alone", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n" + chunks,
			0, 400, []string{"400"}},
	} {
		if tc.front > 0 {
			assert.Equal(t, tc.front, frontEndRequests(tc.request), "the proxy model: %s", tc.name)
		}
		for server, addr := range bothServersOf(t, smuggleApp) {
			t.Run(server+"/"+tc.name, func(t *testing.T) {
				var got []string
				for _, a := range allAnswers(t, addr, tc.request) {
					got = append(got, summary(a))
				}
				if server == "ours" {
					assert.Equal(t, []string{strconv.Itoa(tc.ours)}, got, "one refusal, and the connection closed")
				} else {
					assert.Equal(t, tc.netHTTP, got, "what net/http did on Go 1.26.8")
				}
			})
		}
	}
}
