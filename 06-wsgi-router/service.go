package wsgirouter

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// www is the stage's web folder, built into the binary, so the server
// serves it from whatever folder it runs in.
//
//go:embed www
var www embed.FS

// WWW returns the embedded web folder: index.html and what it loads.
func WWW() fs.FS {
	files, err := fs.Sub(www, "www")
	if err != nil {
		panic(err) // "www" is a constant, and embedded
	}
	return files
}

// ServerInfo is one server the REST API describes.
type ServerInfo struct {
	Name   string `json:"name"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Status string `json:"status"`
}

// DemoServers is the list the API serves unless Service says otherwise.
var DemoServers = []ServerInfo{
	{Name: "alpha", Host: "10.0.0.1", Port: 8080, Status: "up"},
	{Name: "beta", Host: "10.0.0.2", Port: 8080, Status: "up"},
	{Name: "gamma", Host: "10.0.0.3", Port: 9090, Status: "down"},
}

// Service holds what the demo application serves. Its zero value serves
// the embedded web folder, DemoServers and the real time.
type Service struct {
	Files   fs.FS            // the web folder; nil means WWW(); for a folder on disk, RootFS
	Servers []ServerInfo     // the API's list; nil means DemoServers
	Now     func() time.Time // the clock of /time; nil means time.Now
}

// MaxFileBytes bounds the size of a file the application serves: it reads
// a file whole before it answers, so this bounds what one request makes it
// hold, and MaxConns times this what all of them can.
const MaxFileBytes = 256 << 10

// NewApp returns the demo application: its route table, and what each
// route answers.
//
//	GET  /                           www/index.html
//	GET  /time                       the server's time, in ctime's form
//	GET  /user                       a small HTML page
//	GET  /add?a=1&b=2                {"result": 3}, exactly as stage 01 answers
//	GET  /api/v1.0/servers           {"infos": [every server]}
//	GET  /api/v1.0/servers/{name}    {"infos": [that server]}, or a JSON 404
//	POST /api/v1.0/servers/{name}    the same
//	GET  /{file...}                  a file from the web folder
//
// It panics if that table is wrong, which no Service can make it.
func NewApp(svc Service) *Router {
	a := &app{files: svc.Files, now: svc.Now}
	if a.files == nil {
		a.files = WWW()
	}
	if a.now == nil {
		a.now = time.Now
	}
	servers := svc.Servers
	if servers == nil {
		servers = DemoServers
	}
	// The answers of the API change only when the list does: make them once.
	a.byName = map[string][]byte{}
	var all [][]byte
	for _, s := range servers {
		one := encodeServer(s)
		all = append(all, one)
		a.byName[s.Name] = fmt.Appendf(nil, `{"infos": [%s]}`, one)
	}
	a.all = fmt.Appendf(nil, `{"infos": [%s]}`, bytes.Join(all, []byte(", ")))

	router, err := NewRouter(AppFunc(a.notFound),
		Route{"GET", "/", AppFunc(a.index)},
		Route{"GET", "/time", AppFunc(a.time)},
		Route{"GET", "/user", AppFunc(a.user)},
		Route{AnyMethod, "/add", AppFunc(a.add)},
		Route{"GET", "/api/v1.0/servers", AppFunc(a.servers)},
		Route{"GET", "/api/v1.0/servers/{name}", AppFunc(a.server)},
		Route{"POST", "/api/v1.0/servers/{name}", AppFunc(a.server)},
		Route{"GET", "/{file...}", AppFunc(a.static)},
	)
	if err != nil {
		panic(fmt.Sprintf("the demo's route table: %v", err))
	}
	return router
}

// app is the demo application's state. Nothing in it changes after
// NewApp, so its pages may run on many goroutines at once.
type app struct {
	files  fs.FS
	now    func() time.Time
	all    []byte            // the answer to GET /api/v1.0/servers
	byName map[string][]byte // the answer to GET /api/v1.0/servers/{name}
}

// Header fields the pages answer with. They are made once: a page passes
// the same slice to start every time, and start copies it.
var (
	jsonHeader = Header{{"Content-Type", "application/json"}}
	htmlHeader = Header{{"Content-Type", "text/html; charset=utf-8"}}
	textHeader = Header{{"Content-Type", "text/plain; charset=utf-8"}}
)

func (a *app) index(env *Environ, start StartResponse) []byte {
	return a.serveFile(env, "index.html", start)
}

// time answers the server's time the way Python's time.ctime() spells it.
func (a *app) time(env *Environ, start StartResponse) []byte {
	_ = start(http.StatusOK, textHeader)
	return a.now().AppendFormat(nil, "Mon Jan _2 15:04:05 2006\n")
}

func (a *app) user(env *Environ, start StartResponse) []byte {
	_ = start(http.StatusOK, htmlHeader)
	return []byte("<h2>Hello, I am the /user page: a line of the route table, not a module named by the URL</h2>\n")
}

func (a *app) servers(env *Environ, start StartResponse) []byte {
	_ = start(http.StatusOK, jsonHeader)
	return a.all
}

func (a *app) server(env *Environ, start StartResponse) []byte {
	answer, ok := a.byName[env.Param("name")]
	if !ok {
		return a.notFound(env, start)
	}
	_ = start(http.StatusOK, jsonHeader)
	return answer
}

// apiNotFound is the body of a 404 from the API, byte for byte what the
// article's Flask handler answers.
var apiNotFound = []byte(`{"data": "Not Found", "status": 404}`)

// notFound answers a path nothing serves: in JSON under /api/, as the
// article's API does, and in text elsewhere, where every path names a file.
func (a *app) notFound(env *Environ, start StartResponse) []byte {
	if env.Path == "/api" || strings.HasPrefix(env.Path, "/api/") {
		_ = start(http.StatusNotFound, jsonHeader)
		return apiNotFound
	}
	_ = start(http.StatusNotFound, textHeader)
	return fmt.Appendf(nil, "404 Not Found: no file %s\n", quoteShort(env.Path))
}

// static serves a file of the web folder. The path must name a file inside
// the folder: a path with an empty, "." or ".." segment, a backslash, a
// segment that starts with a dot, or a slash sent encoded (%2F, which no
// file name holds, and which a proxy's rule on the path as sent does not
// see as a slash) is refused before the folder is opened.
// The folder itself refuses the rest: embed.FS has nothing outside it, and
// os.Root (behind -www) follows no link out of its directory.
func (a *app) static(env *Environ, start StartResponse) []byte {
	name := env.Param("file")
	if !fs.ValidPath(name) || strings.ContainsRune(name, '\\') || hiddenSegment(name) ||
		strings.Count(env.RawPath, "/") != strings.Count(env.Path, "/") {
		_ = start(http.StatusBadRequest, textHeader)
		return fmt.Appendf(nil, "400 Bad Request: %s is not the name of a file in the web folder\n", quoteShort(env.Path))
	}
	return a.serveFile(env, name, start)
}

// hiddenSegment reports whether a segment of name starts with a dot, as
// .git or .env do: such files are not for the web, even in a folder served
// from disk.
func hiddenSegment(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, ".") {
			return true
		}
	}
	return false
}

// serveFile answers with the file name of the web folder, checked by the
// caller. A name the folder cannot find, or will not open (os.Root refuses
// a link that leads out of it), is not found, as far as the web can tell;
// what is not a regular file (a folder, a FIFO, a device) is not served,
// and is refused before it is opened: opening a FIFO waits for a writer,
// for ever. RootFS also closes the gap between that check and the open.
func (a *app) serveFile(env *Environ, name string, start StartResponse) []byte {
	if info, err := fs.Stat(a.files, name); err != nil || !info.Mode().IsRegular() {
		return a.notFound(env, start)
	}
	f, err := a.files.Open(name)
	if err != nil {
		return a.notFound(env, start)
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return a.notFound(env, start)
	}
	// Read through a limit, not by the size Stat gave: a file may grow
	// between the two.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err == nil && len(data) > MaxFileBytes {
		err = fmt.Errorf("over the limit of %d bytes", MaxFileBytes)
	}
	if err != nil {
		_ = start(http.StatusInternalServerError, textHeader)
		return fmt.Appendf(nil, "500 Internal Server Error: file %s: %v\n", quoteShort("/"+name), err)
	}
	_ = start(http.StatusOK, Header{{"Content-Type", contentType(name)}})
	return data
}

// RootFS returns the files of root, a folder on disk, for Service.Files:
// the command's -www serves them. Its Open never blocks, and opens only
// regular files. It looks at the name first (Stat, through any link,
// which root keeps inside itself), and refuses a folder, a FIFO or a
// device. Then it opens with O_NONBLOCK, so that a FIFO put in the
// name's place meanwhile cannot block the open, and checks that what it
// opened is the regular file it looked at.
func RootFS(root *os.Root) fs.FS { return rootFS{root} }

type rootFS struct{ root *os.Root }

// errNotRegular is why rootFS will not open a name.
var errNotRegular = errors.New("not a regular file")

func (r rootFS) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	return r.root.Stat(name)
}

func (r rootFS) Open(name string) (fs.File, error) {
	info, err := r.Stat(name)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errNotRegular}
	}
	return r.openRegular(name, info)
}

// openRegular opens name, which Stat saw as the regular file info. The
// name may have changed since: O_NONBLOCK makes opening a FIFO return at
// once (on a regular file it changes nothing), O_NOCTTY keeps a terminal
// from becoming the process's, and the check after the open refuses
// anything but the file info describes.
func (r rootFS) openRegular(name string, info fs.FileInfo) (*os.File, error) {
	f, err := r.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	opened, err := f.Stat()
	if err != nil || !opened.Mode().IsRegular() || !os.SameFile(info, opened) {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: errNotRegular}
	}
	return f, nil
}

// contentType names a file's type from its extension. The table is ours,
// not the system's (mime.TypeByExtension reads /etc/mime.types), so the
// answer is the same on every machine.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".json":
		return "application/json"
	case ".txt":
		return "text/plain; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	}
	return "application/octet-stream"
}

// encodeServer spells one server the way Python's json.dumps does, with a
// space after each colon and comma, like every JSON answer of the stage.
// json.Marshal of a string cannot fail: it spells invalid UTF-8 as U+FFFD.
func encodeServer(s ServerInfo) []byte {
	name, _ := json.Marshal(s.Name)
	host, _ := json.Marshal(s.Host)
	status, _ := json.Marshal(s.Status)
	return fmt.Appendf(nil, `{"name": %s, "host": %s, "port": %d, "status": %s}`, name, host, s.Port, status)
}

// add answers GET /add?a=1&b=2 exactly as stage 01's server does, so that
// stage 01's clients work against this server unchanged.
func (a *app) add(env *Environ, start StartResponse) []byte {
	if env.Method != http.MethodGet && env.Method != http.MethodHead {
		return addError(start, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed: call GET /add?a=1&b=2", quoteShort(env.Method)),
			Field{"Allow", "GET, HEAD"})
	}
	x, y, err := parseOperands(env.Query)
	if err != nil {
		return addError(start, http.StatusBadRequest, err.Error())
	}
	sum, err := add(x, y)
	if err != nil {
		return addError(start, http.StatusBadRequest, err.Error())
	}
	_ = start(http.StatusOK, jsonHeader)
	return fmt.Appendf(nil, `{"result": %d}`, sum)
}

// addError answers a call of add that failed, as stage 01 does.
func addError(start StartResponse, status int, message string, extra ...Field) []byte {
	var msg bytes.Buffer
	enc := json.NewEncoder(&msg)
	enc.SetEscapeHTML(false) // keep "&" as it is: this is not going into HTML
	_ = enc.Encode(message)  // a string always encodes
	_ = start(status, append(extra, jsonHeader...))
	return fmt.Appendf(nil, `{"error": %s}`, bytes.TrimSuffix(msg.Bytes(), []byte("\n")))
}

// add is the procedure of stage 01. Go's integers wrap around when they
// overflow, so add checks before it adds.
func add(a, b int) (int, error) {
	if (b > 0 && a > math.MaxInt-b) || (b < 0 && a < math.MinInt-b) {
		return 0, fmt.Errorf("a + b overflows: %d + %d does not fit in an int (%d bits)", a, b, strconv.IntSize)
	}
	return a + b, nil
}

// parseOperands reads a and b from a query string as stage 01 does: a
// missing operand counts as 0, and anything but one integer per operand
// is an error that names the parameter.
func parseOperands(rawQuery string) (a, b int, err error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, 0, fmt.Errorf("query string: %v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if name != "a" && name != "b" {
			return 0, 0, fmt.Errorf("parameter %s: add takes only a and b", quoteShort(name))
		}
	}
	if a, err = operand(q, "a"); err != nil {
		return 0, 0, err
	}
	if b, err = operand(q, "b"); err != nil {
		return 0, 0, err
	}
	return a, b, nil
}

func operand(q url.Values, name string) (int, error) {
	values, ok := q[name]
	switch {
	case !ok:
		return 0, nil
	case len(values) > 1:
		return 0, fmt.Errorf("parameter %s: given %d times, give it once", name, len(values))
	}
	n, err := strconv.Atoi(values[0])
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("parameter %s: %s does not fit in an int (%d bits)", name, quoteShort(values[0]), strconv.IntSize)
	}
	if err != nil {
		return 0, fmt.Errorf("parameter %s: %s is not an integer", name, quoteShort(values[0]))
	}
	return n, nil
}
