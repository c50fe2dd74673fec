package wsgirouter

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTimeIsCtime(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		want string
	}{
		{articleTime, "Thu Jan 17 17:24:02 2019\n"},
		// ctime pads a day below 10 with a space, not a zero.
		{time.Date(2024, time.March, 5, 9, 7, 3, 0, time.UTC), "Tue Mar  5 09:07:03 2024\n"},
	} {
		app := NewApp(Service{Now: func() time.Time { return tc.now }})
		got := callWSGI(t, app, "GET", "/time", nil)
		assert.Equal(t, 200, got.status)
		assert.Equal(t, Header{{"Content-Type", "text/plain; charset=utf-8"}}, got.header)
		assert.Equal(t, tc.want, got.body)
	}
}

// infos is the shape of every answer of the API.
type infos struct {
	Infos []ServerInfo `json:"infos"`
}

func decodeInfos(t *testing.T, body string) []ServerInfo {
	t.Helper()
	var got infos
	require.NoError(t, json.Unmarshal([]byte(body), &got), body)
	return got.Infos
}

func TestAPIServesDemoServers(t *testing.T) {
	app := NewApp(Service{})
	got := callWSGI(t, app, "GET", "/api/v1.0/servers", nil)
	assert.Equal(t, 200, got.status)
	assert.Equal(t, Header{{"Content-Type", "application/json"}}, got.header)
	assert.Equal(t, DemoServers, decodeInfos(t, got.body))
	assert.Equal(t, `{"infos": [`+alphaJSON+`, `+betaJSON+`, `+gammaJSON+`]}`, got.body)

	for _, method := range []string{"GET", "POST"} {
		for _, s := range DemoServers {
			got := callWSGI(t, app, method, "/api/v1.0/servers/"+s.Name, nil)
			assert.Equal(t, 200, got.status)
			assert.Equal(t, []ServerInfo{s}, decodeInfos(t, got.body))
		}
		got := callWSGI(t, app, method, "/api/v1.0/servers/delta", nil)
		assert.Equal(t, 404, got.status)
		assert.Equal(t, Header{{"Content-Type", "application/json"}}, got.header)
		assert.Equal(t, apiNotFoundJSON, got.body)
	}
}

func TestAPIServesACustomList(t *testing.T) {
	servers := []ServerInfo{
		{Name: `say "hi"` + "\n<b>&\\", Host: "::1", Port: 1, Status: "up"},
		{Name: "ünï cödé", Host: "h", Port: 65535, Status: "down"},
		{Name: "plain", Host: "10.0.0.9", Port: 80, Status: "up"},
	}
	app := NewApp(Service{Servers: servers})
	got := callWSGI(t, app, "GET", "/api/v1.0/servers", nil)
	assert.Equal(t, 200, got.status)
	assert.Equal(t, servers, decodeInfos(t, got.body))
	assert.True(t, json.Valid([]byte(got.body)))
	assert.Contains(t, got.body, `"name": "say \"hi\"\n\u003cb\u003e\u0026\\"`, "escaped, as JSON and for HTML")
	assert.NotContains(t, got.body, `"alpha"`, "a custom list replaces the demo one")

	for _, s := range servers {
		got := callWSGI(t, app, "GET", "/api/v1.0/servers/"+url.PathEscape(s.Name), nil)
		assert.Equal(t, 200, got.status, "server %q", s.Name)
		assert.Equal(t, []ServerInfo{s}, decodeInfos(t, got.body))
	}

	empty := NewApp(Service{Servers: []ServerInfo{}})
	got = callWSGI(t, empty, "GET", "/api/v1.0/servers", nil)
	assert.Equal(t, `{"infos": []}`, got.body, "an empty list is not nil: it serves no server")
}

func TestStaticFiles(t *testing.T) {
	files := fstest.MapFS{
		"index.html":      {Data: []byte("<p>home</p>")},
		"a.txt":           {Data: []byte("text")},
		"dir/b.css":       {Data: []byte("b {}")},
		"dir/.secret":     {Data: []byte("hidden")},
		".env":            {Data: []byte("PASSWORD=x")},
		".git/config":     {Data: []byte("[core]")},
		"exactly.bin":     {Data: make([]byte, MaxFileBytes)},
		"big.bin":         {Data: make([]byte, MaxFileBytes+1)},
		"empty.json":      {Data: nil},
		"dir/sub/deep.js": {Data: []byte("1")},
	}
	app := NewApp(Service{Files: files})
	for _, tc := range []struct {
		path   string
		status int
		ctype  string
		body   string
	}{
		{"/", 200, "text/html; charset=utf-8", "<p>home</p>"},
		{"/index.html", 200, "text/html; charset=utf-8", "<p>home</p>"},
		{"/a.txt", 200, "text/plain; charset=utf-8", "text"},
		{"/dir/b.css", 200, "text/css; charset=utf-8", "b {}"},
		{"/dir/sub/deep.js", 200, "text/javascript; charset=utf-8", "1"},
		{"/empty.json", 200, "application/json", ""},
		{"/dir", 404, "text/plain; charset=utf-8", "404 Not Found: no file \"/dir\"\n"},
		{"/dir/", 400, "text/plain; charset=utf-8", "400 Bad Request: \"/dir/\" is not the name of a file in the web folder\n"},
		{"/nothing", 404, "text/plain; charset=utf-8", "404 Not Found: no file \"/nothing\"\n"},
		{"/.env", 400, "text/plain; charset=utf-8", "400 Bad Request: \"/.env\" is not the name of a file in the web folder\n"},
		{"/dir/.secret", 400, "text/plain; charset=utf-8", "400 Bad Request: \"/dir/.secret\" is not the name of a file in the web folder\n"},
		{"/.git/config", 400, "text/plain; charset=utf-8", "400 Bad Request: \"/.git/config\" is not the name of a file in the web folder\n"},
		{"/big.bin", 500, "text/plain; charset=utf-8",
			fmt.Sprintf("500 Internal Server Error: file \"/big.bin\": over the limit of %d bytes\n", MaxFileBytes)},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got := callWSGI(t, app, "GET", tc.path, nil)
			assert.Equal(t, tc.status, got.status)
			assert.Equal(t, Header{{"Content-Type", tc.ctype}}, got.header)
			assert.Equal(t, tc.body, got.body)
		})
	}
	got := callWSGI(t, app, "GET", "/exactly.bin", nil)
	assert.Equal(t, 200, got.status, "a file of MaxFileBytes is served")
	assert.Len(t, got.body, MaxFileBytes)

	noIndex := NewApp(Service{Files: fstest.MapFS{"a.txt": {Data: []byte("a")}}})
	assert.Equal(t, 404, callWSGI(t, noIndex, "GET", "/", nil).status)
}

// TestWWWDirectoryStaysInside serves a folder from disk through os.Root,
// as -www does (through RootFS), and puts links in it that point out of
// it. None is followed out: os.Root refuses them.
func TestWWWDirectoryStaysInside(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	write("index.html", "<p>disk</p>")
	write("sub/page.txt", "inside")
	const secret = "the secret outside the web folder\n"
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.txt"), []byte(secret), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "secret.txt")))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "out")))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")))
	require.NoError(t, os.Symlink("/etc", filepath.Join(dir, "etc")))
	require.NoError(t, os.Symlink("../../../../../../../etc/passwd", filepath.Join(dir, "relative")))
	require.NoError(t, os.Symlink("sub/page.txt", filepath.Join(dir, "inside-link.txt")))

	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	for name, files := range map[string]fs.FS{"RootFS": RootFS(root), "os.Root.FS": root.FS()} {
		t.Run(name, func(t *testing.T) { testStaysInside(t, NewApp(Service{Files: files}), outside) })
	}
}

func testStaysInside(t *testing.T, app Application, outside string) {
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/", 200, "<p>disk</p>"},
		{"/sub/page.txt", 200, "inside"},
		{"/inside-link.txt", 200, "inside"}, // a link that stays inside is followed
		{"/../" + filepath.Base(outside) + "/secret.txt", 400,
			"400 Bad Request: \"/../" + filepath.Base(outside) + "/secret.txt\" is not the name of a file in the web folder\n"},
		// os.Root refuses a NUL (the system call cannot take it): that
		// too is a file the folder does not have.
		{"/index.html\x00.txt", 404, "404 Not Found: no file \"/index.html\\x00.txt\"\n"},
	} {
		got := callWSGI(t, app, "GET", tc.path, nil)
		assert.Equal(t, tc.status, got.status, tc.path)
		assert.Equal(t, tc.body, got.body, tc.path)
	}
	for _, path := range []string{
		"/secret.txt", "/out/secret.txt", "/passwd", "/etc/passwd", "/relative",
	} {
		t.Run(path, func(t *testing.T) {
			got := callWSGI(t, app, "GET", path, nil)
			// Refused as a file the folder does not have: the answer
			// does not tell a link out from a missing file.
			assert.Equal(t, 404, got.status)
			assert.Equal(t, fmt.Sprintf("404 Not Found: no file %q\n", path), got.body)
		})
	}
}

func TestContentType(t *testing.T) {
	for name, want := range map[string]string{
		"index.html":   "text/html; charset=utf-8",
		"a/b.css":      "text/css; charset=utf-8",
		"app.js":       "text/javascript; charset=utf-8",
		"data.json":    "application/json",
		"notes.txt":    "text/plain; charset=utf-8",
		"logo.svg":     "image/svg+xml",
		"logo.png":     "image/png",
		"favicon.ico":  "image/x-icon",
		"archive.tar":  "application/octet-stream",
		"noextension":  "application/octet-stream",
		"page.HTML":    "application/octet-stream", // the table is exact: no case folding
		"index.html.1": "application/octet-stream",
		"dir.html/x":   "application/octet-stream",
	} {
		assert.Equal(t, want, contentType(name), name)
	}
}

// fifoIn makes a FIFO named name in dir. Opening it to read waits for a
// writer; unblockFIFO, which the test runs when it ends, frees such an
// open if a broken server is stuck in one.
func fifoIn(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, syscall.Mkfifo(path, 0o644))
	t.Cleanup(func() { unblockFIFO(path) })
	return path
}

// unblockFIFO opens the FIFO at path to write, without waiting, and
// closes it: every open that waits to read it then returns, and its
// reads end.
func unblockFIFO(path string) {
	if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}

// returnsSoon runs f on a goroutine and waits for it until bound, a
// backstop: f is expected to return at once. If it does not, the test
// fails, and unblock frees it.
func returnsSoon(t *testing.T, what string, bound time.Duration, f func(), unblock func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(bound):
		t.Errorf("%s: still blocked after %v", what, bound)
		for {
			unblock()
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond): // the open may not have begun yet: free it again
			}
		}
	}
}

// TestStaticFilesRefuseAFIFO puts a FIFO, and a link to it, in a folder
// served from disk. Opening a FIFO to read waits for a writer: a server
// that opened it would hold the request, its connection and a thread for
// good. Both are answered 404 at once, through RootFS as -www serves the
// folder, and through os.DirFS, which has no guard of its own: the
// application looks at the name before it opens it.
func TestStaticFilesRefuseAFIFO(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.txt"), []byte("ok"), 0o644))
	fifo := fifoIn(t, dir, "fifo")
	require.NoError(t, os.Symlink("fifo", filepath.Join(dir, "fifo-link")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })

	for name, files := range map[string]fs.FS{"RootFS": RootFS(root), "os.DirFS": os.DirFS(dir)} {
		t.Run(name, func(t *testing.T) {
			app := NewApp(Service{Files: files})
			for _, path := range []string{"/fifo", "/fifo-link", "/sub"} {
				var got recorded
				returnsSoon(t, "GET "+path, 5*time.Second, func() { got = callWSGI(t, app, "GET", path, nil) }, func() { unblockFIFO(fifo) })
				assert.Equal(t, 404, got.status, path)
				assert.Equal(t, fmt.Sprintf("404 Not Found: no file %q\n", path), got.body)
			}
			got := callWSGI(t, app, "GET", "/ok.txt", nil)
			assert.Equal(t, 200, got.status)
			assert.Equal(t, "ok", got.body)
		})
	}
}

// TestRootFSOpensWhatItLookedAt swaps the file RootFS looked at for
// something else before it opens it: a FIFO, whose open must not wait,
// and another regular file. Both are refused.
func TestRootFSOpensWhatItLookedAt(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	files := RootFS(root).(rootFS)
	path := filepath.Join(dir, "a.txt")

	// Each is made beside a.txt, then renamed over it, as an attacker
	// would swap it: while both exist they are different files, so the
	// system cannot give the new one the old one's inode number.
	for _, tc := range []struct {
		name string
		make func(path string)
	}{
		{"a FIFO", func(path string) { fifoIn(t, dir, filepath.Base(path)) }},
		{"another file", func(path string) { require.NoError(t, os.WriteFile(path, []byte("other"), 0o644)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, []byte("looked at"), 0o644))
			info, err := files.Stat("a.txt")
			require.NoError(t, err)
			require.True(t, info.Mode().IsRegular())
			tc.make(path + ".new")
			require.NoError(t, os.Rename(path+".new", path))

			var f *os.File
			returnsSoon(t, "openRegular", 5*time.Second, func() { f, err = files.openRegular("a.txt", info) }, func() { unblockFIFO(path) })
			if f != nil {
				f.Close()
			}
			assert.ErrorIs(t, err, errNotRegular)
			require.NoError(t, os.Remove(path))
		})
	}
}
