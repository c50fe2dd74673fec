package wsgirouter

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorded is what an application did with one request: what it passed
// to start, and the body it returned.
type recorded struct {
	started bool
	status  int
	header  Header
	body    string
	params  []Param
}

// assertRouted checks that got is the 200 of the route named want, which
// saw params (none if params is empty).
func assertRouted(t *testing.T, got recorded, want string, params []Param) {
	t.Helper()
	assert.Equal(t, 200, got.status)
	assert.Equal(t, want, got.body)
	if len(params) == 0 {
		assert.Empty(t, got.params)
	} else {
		assert.Equal(t, params, got.params)
	}
}

// callWSGI calls app directly, with no server, for a request of method
// and target, and a start that checks as the servers' does.
func callWSGI(t *testing.T, app Application, method, target string, body []byte) recorded {
	t.Helper()
	rawPath, query, _ := strings.Cut(target, "?")
	path, err := url.PathUnescape(rawPath)
	require.NoError(t, err)
	env := &Environ{
		Method: method, Target: target, RawPath: rawPath, Path: path, Query: query, Proto: "HTTP/1.1",
		Header: Header{{"Host", "test"}}, Body: body, RemoteAddr: "192.0.2.1:1234",
	}
	var resp response
	out := app.ServeWSGI(env, resp.start)
	return recorded{started: resp.started, status: resp.status, header: resp.header, body: string(out), params: env.Params}
}

// namedApp answers 200 with its name, so a test sees which route matched.
func namedApp(name string) Application {
	return AppFunc(func(env *Environ, start StartResponse) []byte {
		_ = start(200, nil)
		return []byte(name)
	})
}

func TestNewRouterRefusesBadTables(t *testing.T) {
	ok := namedApp("ok")
	for _, tc := range []struct {
		name   string
		routes []Route
		want   string
	}{
		{"empty pattern", []Route{{"GET", "", ok}}, `pattern "" does not start with /`},
		{"relative pattern", []Route{{"GET", "time", ok}}, `pattern "time" does not start with /`},
		{"no closing brace", []Route{{"GET", "/a/{x", ok}}, `pattern "/a/{x": segment "{x" has no closing brace`},
		{"stray closing brace", []Route{{"GET", "/a/x}", ok}}, `pattern "/a/x}": segment "x}" mixes text and a parameter`},
		{"text and a parameter", []Route{{"GET", "/a/b{x}", ok}}, `pattern "/a/b{x}": segment "b{x}" mixes text and a parameter`},
		{"rest not last", []Route{{"GET", "/{rest...}/x", ok}}, `pattern "/{rest...}/x": {rest...} must be the last segment`},
		{"empty parameter name", []Route{{"GET", "/{}", ok}}, `pattern "/{}": parameter name "" is not a name`},
		{"empty rest name", []Route{{"GET", "/{...}", ok}}, `pattern "/{...}": parameter name "" is not a name`},
		{"space in a name", []Route{{"GET", "/{a b}", ok}}, `pattern "/{a b}": parameter name "a b" is not a name`},
		{"empty method", []Route{{"", "/x", ok}}, "route  /x: method is not a token"},
		{"space in a method", []Route{{"GE T", "/x", ok}}, "route GE T /x: method is not a token"},
		{"nil App", []Route{{"GET", "/x", nil}}, "route GET /x has no App"},
		{"a route twice", []Route{{"GET", "/x", ok}, {"POST", "/x", ok}, {"GET", "/x", ok}}, "route GET /x is in the table twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRouter(namedApp("not found"), tc.routes...)
			assert.EqualError(t, err, tc.want)
			assert.Nil(t, r)
		})
	}
}

// matchingTable is a route table whose every App answers its own name.
func matchingTable(t *testing.T) *Router {
	t.Helper()
	r, err := NewRouter(namedApp("not found"),
		Route{"GET", "/", namedApp("root")},
		Route{"GET", "/time", namedApp("time")},
		Route{"GET", "/dir/", namedApp("dir/")},
		Route{"GET", "/api/{version}/servers/{name}", namedApp("server")},
		Route{"GET", "/files/{file...}", namedApp("files")},
		Route{AnyMethod, "/any", namedApp("any")},
		Route{"GET", "/first/{x}", namedApp("first, a parameter")},
		Route{"GET", "/first/literal", namedApp("second, a literal")},
		Route{"POST", "/m", namedApp("m by POST")},
		Route{"GET", "/m", namedApp("m by GET")},
		Route{"PUT", "/m", namedApp("m by PUT")},
		Route{"POST", "/post-or-file", namedApp("post")},
		Route{"GET", "/{file...}", namedApp("catch-all")},
	)
	require.NoError(t, err)
	return r
}

func TestRouterMatching(t *testing.T) {
	r := matchingTable(t)
	for _, tc := range []struct {
		method, path string
		want         string
		params       []Param
	}{
		{"GET", "/", "root", nil},
		{"GET", "/time", "time", nil},
		{"HEAD", "/time", "time", nil},
		{"GET", "/time/", "catch-all", []Param{{"file", "time/"}}},
		{"GET", "/Time", "catch-all", []Param{{"file", "Time"}}},
		{"GET", "/dir/", "dir/", nil},
		{"GET", "/dir", "catch-all", []Param{{"file", "dir"}}},
		{"GET", "/api/v1.0/servers/alpha", "server", []Param{{"version", "v1.0"}, {"name", "alpha"}}},
		{"GET", "/api/v1.0/servers/", "catch-all", []Param{{"file", "api/v1.0/servers/"}}},
		{"GET", "/api//servers/alpha", "catch-all", []Param{{"file", "api//servers/alpha"}}},
		{"GET", "/api/v1.0/servers/alpha/more", "catch-all", []Param{{"file", "api/v1.0/servers/alpha/more"}}},
		{"GET", "/files/a/b/c.txt", "files", []Param{{"file", "a/b/c.txt"}}},
		{"GET", "/files/", "files", []Param{{"file", ""}}},
		{"GET", "/files//x", "files", []Param{{"file", "/x"}}},
		{"GET", "/files", "catch-all", []Param{{"file", "files"}}},
		{"DELETE", "/any", "any", nil},
		{"BREW", "/any", "any", nil},
		{"GET", "/first/literal", "first, a parameter", []Param{{"x", "literal"}}},
		{"POST", "/m", "m by POST", nil},
		{"GET", "/m", "m by GET", nil},
		{"HEAD", "/m", "m by GET", nil},
		{"PUT", "/m", "m by PUT", nil},
		// The POST route matches the path but not the method; a later
		// route takes both.
		{"GET", "/post-or-file", "catch-all", []Param{{"file", "post-or-file"}}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			assertRouted(t, callWSGI(t, r, tc.method, tc.path, nil), tc.want, tc.params)
		})
	}
}

func TestRouterNotFound(t *testing.T) {
	r, err := NewRouter(namedApp("not found"),
		Route{"GET", "/time", namedApp("time")},
		Route{"GET", "/api/{name}", namedApp("api")},
	)
	require.NoError(t, err)
	for _, path := range []string{"/", "", "time", "/time/", "/timex", "/api", "/api/", "/api/a/b"} {
		got := callWSGI(t, r, "GET", path, nil)
		assert.Equal(t, "not found", got.body, "path %q", path)
		assert.Empty(t, got.params, "a route that failed to match leaves no parameter")
	}
}

func TestRouterMethodNotAllowed(t *testing.T) {
	r := matchingTable(t)
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"DELETE", "/m", "GET, HEAD, POST, PUT"},
		{"OPTIONS", "/m", "GET, HEAD, POST, PUT"},
		{"POST", "/time", "GET, HEAD"},
		{"POST", "/", "GET, HEAD"},
		{"POST", "/api/v1.0/servers/alpha", "GET, HEAD"},
		{"PUT", "/post-or-file", "GET, HEAD, POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			got := callWSGI(t, r, tc.method, tc.path, nil)
			assert.Equal(t, 405, got.status)
			assert.Equal(t, Header{{"Allow", tc.allow}}, got.header)
			assert.Equal(t, fmt.Sprintf("405 Method Not Allowed: %q takes %s, not %q\n", tc.path, tc.allow, tc.method), got.body)
		})
	}
}

// TestMatchingAllocatesNothing guards match's promise: parameters are
// slices of the path, appended to the Environ's own slice.
func TestMatchingAllocatesNothing(t *testing.T) {
	r := matchingTable(t)
	params := make([]Param, 0, 4)
	var matched []Param
	allocs := testing.AllocsPerRun(100, func() {
		for i := range r.routes {
			var ok bool
			if matched, ok = r.routes[i].match("/api/v1.0/servers/alpha", params[:0]); ok {
				break
			}
		}
	})
	assert.Zero(t, allocs)
	assert.Equal(t, []Param{{"version", "v1.0"}, {"name", "alpha"}}, matched)
}

// TestRouteTableIsData: the article's server turned the path into a module
// name and imported it (__import__), so a URL could run any code the server
// could find. Here a URL chooses a line of the table, never code: names of
// the package's functions and methods, and of Go's, find no route, and
// answer 404 (or 400 where the name is no file name at all).
func TestRouteTableIsData(t *testing.T) {
	app := demoApp(t)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/parseOperands", 404},
		{"/parseOperands?a=1&b=2", 404},
		{"/notFound", 404},
		{"/os.Exit", 404},
		{"/os.Exit(1)", 404},
		{"/wsgirouter.NewApp", 404},
		{"/(*app).time", 404},
		{"/serveFile", 404},
		{"/static", 404},
		{"/service.go", 404},
		{"/main", 404},
		{"/__import__('os').system('id')", 404},
		{"/user.py", 404},
		{"/../service.go", 400},
		{"/time/../os.Exit", 400},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got := callWSGI(t, app, "GET", tc.path, nil)
			assert.Equal(t, tc.status, got.status, got.body)
			assert.NotContains(t, got.body, "package wsgirouter")
			assert.NotContains(t, got.body, "func ")
		})
	}
}

// TestNewRouterNilNotFound: a Router given no NotFound application
// answers a path no route matches with 404, as a Server with no App does.
func TestNewRouterNilNotFound(t *testing.T) {
	r, err := NewRouter(nil, Route{"GET", "/x", namedApp("x")})
	require.NoError(t, err)
	got := callWSGI(t, r, "GET", "/y", nil)
	assert.Equal(t, 404, got.status)
	assert.Equal(t, "x", callWSGI(t, r, "GET", "/x", nil).body)
}

// TestRoutesMatchThePathAsSent: a route sees the path split on its
// slashes as sent, each segment decoded after, as Go's http.ServeMux does.
// A front proxy whose rule says "/api/ goes to the API team's checks"
// reads the path as sent: /api%2Fv1.0/servers/alpha is not under /api/
// for it, and must not be for the route table either.
func TestRoutesMatchThePathAsSent(t *testing.T) {
	r := matchingTable(t)
	for _, tc := range []struct {
		path   string
		want   string
		params []Param
	}{
		{"/api%2Fv1.0/servers/alpha", "catch-all", []Param{{"file", "api/v1.0/servers/alpha"}}},
		{"/api%2fv1.0/servers/alpha", "catch-all", []Param{{"file", "api/v1.0/servers/alpha"}}},
		{"/api/v1.0%2Fservers/alpha", "catch-all", []Param{{"file", "api/v1.0/servers/alpha"}}},
		{"/api/v1.0/servers/a%2Fb", "server", []Param{{"version", "v1.0"}, {"name", "a/b"}}},
		{"/api/v1%2E0/servers/%61lpha", "server", []Param{{"version", "v1.0"}, {"name", "alpha"}}},
		{"/ti%6De", "time", nil},
		{"/first/lit%65ral", "first, a parameter", []Param{{"x", "literal"}}},
		{"/files/a%2Fb/c%20d", "files", []Param{{"file", "a/b/c d"}}},
		{"/dir%2F", "catch-all", []Param{{"file", "dir/"}}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			assertRouted(t, callWSGI(t, r, "GET", tc.path, nil), tc.want, tc.params)
		})
	}
}

// TestDemoRoutesOnThePathAsSent runs the demo application on both servers:
// an encoded slash does not lead into the API; the route for files, which
// catches the path then, refuses it, since no file name holds a "/"; and
// a {name} of the API may hold one (and then names no server).
func TestDemoRoutesOnThePathAsSent(t *testing.T) {
	app := NewApp(Service{Files: fstest.MapFS{
		"index.html":    {Data: []byte("index")},
		"sub/page.txt":  {Data: []byte("a page in a folder")},
		"private/x.txt": {Data: []byte("behind the proxy's rule on /private/")},
	}})
	for server, addr := range bothServersOf(t, app) {
		for _, tc := range []struct {
			target string
			status int
			body   string
		}{
			// The route for files takes them, and refuses the slash.
			{"/api%2Fv1.0/servers/alpha", 400, "400 Bad Request: \"/api/v1.0/servers/alpha\" is not the name of a file in the web folder\n"},
			{"/api/v1.0/servers%2Falpha", 400, "400 Bad Request: \"/api/v1.0/servers/alpha\" is not the name of a file in the web folder\n"},
			{"/api/v1.0/servers/%61lpha", 200, `{"infos": [` + alphaJSON + `]}`},
			{"/api/v1.0/servers/alpha%2Fbeta", 404, apiNotFoundJSON},
			{"/sub/page.txt", 200, "a page in a folder"},
			{"/sub/page%2Etxt", 200, "a page in a folder"},
			{"/sub%2Fpage.txt", 400, "400 Bad Request: \"/sub/page.txt\" is not the name of a file in the web folder\n"},
			{"/private%2fx.txt", 400, "400 Bad Request: \"/private/x.txt\" is not the name of a file in the web folder\n"},
			{"/index%2ehtml", 200, "index"},
		} {
			t.Run(server+tc.target, func(t *testing.T) {
				resp, body, _ := exchangeOnce(t, addr, getRequest(tc.target))
				assert.Equal(t, tc.status, resp.StatusCode)
				assert.Equal(t, tc.body, body)
			})
		}
	}
}
