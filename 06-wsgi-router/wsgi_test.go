package wsgirouter

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bothServersOf runs app on our server and behind net/http's, and returns
// their addresses by name: the WSGI rules hold on both.
func bothServersOf(t *testing.T, app Application) map[string]string {
	t.Helper()
	return map[string]string{
		"ours":     serve(t, NewServer(app), rpctest.Listen(t)),
		"net/http": serveNetHTTP(t, app, rpctest.Listen(t)),
	}
}

// exchangeOnce sends request on a new connection to addr and reads the
// answer: the response, its body, and the raw bytes of its head.
func exchangeOnce(t *testing.T, addr, request string) (*http.Response, string, string) {
	t.Helper()
	conn, br := rawConn(t, addr)
	sendWire(t, conn, request)
	head := readHead(t, br)
	resp, body := readWire(t, bufio.NewReader(io.MultiReader(strings.NewReader(head), br)), "GET")
	return resp, string(body), head
}

// readHead reads an answer's status line and fields, up to and with the
// empty line, as they came.
func readHead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		head.WriteString(line)
		if line == "\r\n" {
			return head.String()
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestStartRefusesServerOwnedFields: a field the server writes itself is
// refused by start, which then starts nothing. The application here tries
// again with no fields, and says what the first start returned: the answer
// carries the server's own framing only.
func TestStartRefusesServerOwnedFields(t *testing.T) {
	for _, field := range []Field{
		{"Content-Length", "999999"},
		{"content-length", "7777"},
		{"Connection", "close"},
		{"Date", "Thu, 01 Jan 1970 00:00:00 GMT"},
		{"Transfer-Encoding", "chunked"},
		{"TRANSFER-ENCODING", "identity"},
	} {
		app := AppFunc(func(env *Environ, start StartResponse) []byte {
			err := start(202, Header{{"X-Before", "b"}, field})
			if retry := start(200, nil); retry != nil {
				return []byte("the retry failed: " + retry.Error())
			}
			return []byte(errText(err))
		})
		for server, addr := range bothServersOf(t, app) {
			t.Run(server+"/"+field.Name, func(t *testing.T) {
				resp, body, head := exchangeOnce(t, addr, getRequest("/"))
				assert.Equal(t, 200, resp.StatusCode, "the refused start set no status")
				assert.Equal(t, "field "+field.Name+" is the server's to write", body)
				assert.Empty(t, resp.Header.Values("X-Before"), "the refused start set no field")
				// Content-Length and Date once, the server's; Connection
				// and Transfer-Encoding not at all, on a kept connection
				// with a length.
				want := 0
				if strings.EqualFold(field.Name, "Content-Length") || strings.EqualFold(field.Name, "Date") {
					want = 1
				}
				assert.Equal(t, want, strings.Count(strings.ToLower(head), "\r\n"+strings.ToLower(field.Name)+":"),
					"the server's own %s only:\n%s", field.Name, head)
				assert.NotContains(t, head, ": "+field.Value+"\r\n", "the application's value is not on the wire")
				assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
			})
		}
	}
}

// TestStartRefusesResponseSplitting: a CR or LF in a field's value would
// end the field and let the rest write fields of its own. start refuses
// it, and nothing of it reaches the wire.
func TestStartRefusesResponseSplitting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		field Field
		want  string
	}{
		{"CR LF in a value", Field{"X-Note", "a\r\nSet-Cookie: evil=1"}, "field X-Note holds a control character"},
		{"LF alone", Field{"X-Note", "a\nSet-Cookie: evil=1"}, "field X-Note holds a control character"},
		{"CR alone", Field{"X-Note", "a\rSet-Cookie: evil=1"}, "field X-Note holds a control character"},
		{"NUL", Field{"X-Note", "a\x00evil"}, "field X-Note holds a control character"},
		{"CR LF in a name", Field{"X-Note\r\nSet-Cookie", "evil=1"}, `field name "X-Note\r\nSet-Cookie" is not a token`},
		{"colon in a name", Field{"Set-Cookie: evil=1\r\nX", "y"}, `field name "Set-Cookie: evil=1\r\nX" is not a token`},
		{"empty name", Field{"", "evil"}, `field name "" is not a token`},
	} {
		app := AppFunc(func(env *Environ, start StartResponse) []byte {
			err := start(200, Header{tc.field})
			_ = start(200, nil)
			return []byte(errText(err))
		})
		for server, addr := range bothServersOf(t, app) {
			t.Run(server+"/"+tc.name, func(t *testing.T) {
				resp, body, head := exchangeOnce(t, addr, getRequest("/"))
				assert.Equal(t, 200, resp.StatusCode)
				assert.Equal(t, tc.want, body)
				assert.NotContains(t, head, "evil")
				assert.Empty(t, resp.Header.Values("Set-Cookie"))
				assert.Empty(t, resp.Header.Values("X-Note"))
			})
		}
	}
}

func TestStartRefusesBadStatus(t *testing.T) {
	for _, status := range []int{0, 100, 101, 199, 1000, -200} {
		var response response
		err := response.start(status, nil)
		assert.EqualError(t, err, "status "+strconv.Itoa(status)+": the application may answer 200 to 999")
		assert.NoError(t, response.start(200, nil), "a refused start starts nothing")
	}
}

// TestReturnWithoutStartAnswers500: an application that returns a body
// without a started answer, whether it never called start or start
// refused its call, is answered 500, its body dropped, and the connection
// goes on: two requests are pipelined on one.
func TestReturnWithoutStartAnswers500(t *testing.T) {
	for _, tc := range []struct {
		name string
		app  AppFunc
	}{
		{"start never called", func(env *Environ, start StartResponse) []byte {
			return []byte("the body of a page that never started")
		}},
		{"start refused", func(env *Environ, start StartResponse) []byte {
			_ = start(200, Header{{"Content-Length", "3"}}) // refused: nothing starts
			return []byte("the body of a page that never started")
		}},
	} {
		for server, addr := range bothServersOf(t, tc.app) {
			t.Run(tc.name+"/"+server, func(t *testing.T) {
				conn, br := rawConn(t, addr)
				sendWire(t, conn, getRequest("/")+getRequest("/"))
				for range 2 {
					resp, body := readWire(t, br, "GET")
					assert.Equal(t, 500, resp.StatusCode)
					want := "the application did not start a response\n"
					if server == "ours" {
						want = "500 Internal Server Error: " + want
					}
					assert.Equal(t, want, string(body))
				}
			})
		}
	}
}

// seenEnviron is what an application saw of its Environ, copied.
type seenEnviron struct {
	Method, Target, Path, Query, Proto string
	Header                             []Field
	Body                               string
	RemoteAddr                         string
}

// environApp answers with the Environ it was called with, in JSON.
var environApp = AppFunc(func(env *Environ, start StartResponse) []byte {
	seen := seenEnviron{
		Method: env.Method, Target: env.Target, Path: env.Path, Query: env.Query, Proto: env.Proto,
		Header: slices.Clone(env.Header), Body: string(env.Body), RemoteAddr: env.RemoteAddr,
	}
	_ = start(200, Header{{"Content-Type", "application/json"}})
	b, _ := json.Marshal(seen)
	return b
})

// TestEnvironOnBothServers checks that an application sees the same
// request on both servers. Where they differ, by design, the test says so:
// net/http spells field names in its canonical case and keeps them in a
// map (the adapter sorts them), and it takes Transfer-Encoding out of the
// fields once it has decoded the body; ours keeps the fields as they came.
func TestEnvironOnBothServers(t *testing.T) {
	for _, tc := range []struct {
		name, request string
		want          seenEnviron
	}{
		{
			name: "GET with a query and repeated fields",
			request: "GET /a%20b/c%2Fd?x=1&y=%20z&y=2 HTTP/1.1\r\nHost: test\r\nX-Custom: one\r\n" +
				"Accept: */*\r\nX-Custom: two\r\n\r\n",
			want: seenEnviron{
				Method: "GET", Target: "/a%20b/c%2Fd?x=1&y=%20z&y=2", Path: "/a b/c/d", Query: "x=1&y=%20z&y=2",
				Proto:  "HTTP/1.1",
				Header: []Field{{"Accept", "*/*"}, {"Host", "test"}, {"X-Custom", "one"}, {"X-Custom", "two"}},
			},
		},
		{
			name: "chunked POST",
			request: "POST /post?q=1 HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n" +
				"Content-Type: text/plain\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
			want: seenEnviron{
				Method: "POST", Target: "/post?q=1", Path: "/post", Query: "q=1", Proto: "HTTP/1.1",
				Header: []Field{{"Content-Type", "text/plain"}, {"Host", "test"}},
				Body:   "hello world",
			},
		},
		{
			name:    "HTTP/1.0 POST with a length",
			request: "POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
			want: seenEnviron{
				Method: "POST", Target: "/p", Path: "/p", Proto: "HTTP/1.0",
				Header: []Field{{"Content-Length", "3"}},
				Body:   "abc",
			},
		},
	} {
		for server, addr := range bothServersOf(t, environApp) {
			t.Run(server+"/"+tc.name, func(t *testing.T) {
				conn, br := rawConn(t, addr)
				sendWire(t, conn, tc.request)
				_, body := readWire(t, br, "GET")
				var seen seenEnviron
				require.NoError(t, json.Unmarshal(body, &seen), "%s", body)
				assert.Equal(t, conn.LocalAddr().String(), seen.RemoteAddr)
				seen.RemoteAddr = ""
				if server == "ours" && tc.name == "chunked POST" {
					// Ours keeps the field that framed the body;
					// net/http takes it out.
					assert.Contains(t, seen.Header, Field{"Transfer-Encoding", "chunked"})
					seen.Header = slices.DeleteFunc(seen.Header, func(f Field) bool { return f.Name == "Transfer-Encoding" })
				}
				// Compare the fields as a set: the order is the
				// client's on ours, sorted by name on net/http's.
				slices.SortStableFunc(seen.Header, func(a, b Field) int { return strings.Compare(a.Name, b.Name) })
				assert.Equal(t, tc.want, seen)
			})
		}
	}
}

// TestEnvironKeepsFieldOrderOnOurs is ours only: net/http's map of fields
// has lost the order, so the adapter sorts it.
func TestEnvironKeepsFieldOrderOnOurs(t *testing.T) {
	conn, br := rawConn(t, serve(t, NewServer(environApp), rpctest.Listen(t)))
	sendWire(t, conn, "GET / HTTP/1.1\r\nZ-Last: 1\r\nhost: test\r\nA-First: 2\r\nx-lower: 3\r\n\r\n")
	_, body := readWire(t, br, "GET")
	var seen seenEnviron
	require.NoError(t, json.Unmarshal(body, &seen))
	assert.Equal(t, []Field{{"Z-Last", "1"}, {"host", "test"}, {"A-First", "2"}, {"x-lower", "3"}}, seen.Header)
}

// TestEnvironIsReusedCopyWhatYouKeep shows why Environ's contract says
// "copy what you keep": our server reuses the Environ, and the buffers
// behind its slices, for the next request on the connection. An
// application that keeps env.Body past its return sees it change under
// it. This is ours only: the net/http adapter makes a new Environ for
// every request.
func TestEnvironIsReusedCopyWhatYouKeep(t *testing.T) {
	type keptEnviron struct {
		body, bodyCopy []byte
		header         Header
	}
	kept := make(chan keptEnviron, 1)
	app := AppFunc(func(env *Environ, start StartResponse) []byte {
		kept <- keptEnviron{
			body:     env.Body,               // wrong: kept past the return
			header:   env.Header,             // wrong too
			bodyCopy: slices.Clone(env.Body), // right: a copy
		}
		_ = start(200, nil)
		return nil
	})
	conn, br := rawConn(t, serve(t, NewServer(app), rpctest.Listen(t)))
	post := func(field, body string) string {
		return "POST / HTTP/1.1\r\n" + field + "\r\nHost: test\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	sendWire(t, conn, post("X-First: 1", "first"))
	readWire(t, br, "POST")
	first := <-kept
	assert.Equal(t, "first", string(first.body))
	assert.Equal(t, Field{"X-First", "1"}, first.header[0])

	sendWire(t, conn, post("X-Second: 2", "SECOND"))
	readWire(t, br, "POST")
	<-kept
	assert.Equal(t, "first", string(first.bodyCopy))
	assert.Equal(t, "SECON", string(first.body), "the kept slice now shows the next request's body")
	assert.Equal(t, Field{"X-Second", "2"}, first.header[0], "the kept fields now show the next request's")
}
