package wsgirouter

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Route is one line of a route table: a request whose method is Method
// and whose path matches Pattern goes to App.
//
// A Pattern is a path whose segments are literal text, or a parameter in
// braces that matches one non-empty segment, or, as the last segment only,
// a parameter ending in "..." that matches the rest of the path:
//
//	/time                      only /time
//	/api/v1.0/servers/{name}   /api/v1.0/servers/alpha, with name = "alpha"
//	/{file...}                 any path, with file = the path without its first /
//
// A request's path is matched as it was sent (Environ.RawPath): it is
// split on its slashes first, and each segment decoded after, so
// /api/v1.0/servers/a%2Fb matches the second pattern with name = "a/b",
// and /api%2Fv1.0/servers/alpha does not match it at all.
type Route struct {
	Method  string // GET, POST, ...; AnyMethod for every method
	Pattern string
	App     Application
}

// AnyMethod as a Route's Method sends every method to its App, which
// answers 405 itself for those it does not take.
const AnyMethod = "*"

// Router sends each request to the App of the first route that matches its
// method and path. Its table is data: a client chooses a line of it, never
// code the table does not name.
//
// A path that matches a route but not with this method is answered 405,
// with an Allow field listing the methods its routes take (a route for
// GET takes HEAD too). A path that matches no route goes to the NotFound
// application.
//
// A Router does not change after NewRouter; it is safe for use by many
// goroutines at once.
type Router struct {
	routes   []compiledRoute
	notFound Application
}

type compiledRoute struct {
	Route
	segments []segment
}

// segment is one segment of a pattern: literal text, or a parameter.
type segment struct {
	literal string
	param   string // the parameter's name, or "" for a literal
	rest    bool   // a {name...} parameter: the rest of the path
}

// NewRouter compiles a route table. It fails on a pattern it cannot read,
// and on two routes with the same method and pattern. A nil notFound
// answers 404 in text.
func NewRouter(notFound Application, routes ...Route) (*Router, error) {
	if notFound == nil {
		notFound = notFoundApp
	}
	r := &Router{notFound: notFound}
	seen := map[[2]string]bool{}
	for _, rt := range routes {
		segs, err := compilePattern(rt.Pattern)
		if err != nil {
			return nil, err
		}
		if !isToken(rt.Method) && rt.Method != AnyMethod {
			return nil, fmt.Errorf("route %s %s: method is not a token", rt.Method, rt.Pattern)
		}
		if rt.App == nil {
			return nil, fmt.Errorf("route %s %s has no App", rt.Method, rt.Pattern)
		}
		key := [2]string{rt.Method, rt.Pattern}
		if seen[key] {
			return nil, fmt.Errorf("route %s %s is in the table twice", rt.Method, rt.Pattern)
		}
		seen[key] = true
		r.routes = append(r.routes, compiledRoute{Route: rt, segments: segs})
	}
	return r, nil
}

// compilePattern splits a pattern into its segments.
func compilePattern(pattern string) ([]segment, error) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, fmt.Errorf("pattern %q does not start with /", pattern)
	}
	parts := strings.Split(pattern[1:], "/")
	segs := make([]segment, len(parts))
	for i, part := range parts {
		name, isParam := strings.CutPrefix(part, "{")
		if !isParam {
			if strings.ContainsAny(part, "{}") {
				return nil, fmt.Errorf("pattern %q: segment %q mixes text and a parameter", pattern, part)
			}
			segs[i] = segment{literal: part}
			continue
		}
		name, ok := strings.CutSuffix(name, "}")
		if !ok {
			return nil, fmt.Errorf("pattern %q: segment %q has no closing brace", pattern, part)
		}
		name, rest := strings.CutSuffix(name, "...")
		if rest && i != len(parts)-1 {
			return nil, fmt.Errorf("pattern %q: {%s...} must be the last segment", pattern, name)
		}
		if !isToken(name) {
			return nil, fmt.Errorf("pattern %q: parameter name %q is not a name", pattern, name)
		}
		for _, prev := range segs[:i] {
			if prev.param == name {
				return nil, fmt.Errorf("pattern %q: parameter %q is there twice", pattern, name)
			}
		}
		segs[i] = segment{param: name, rest: rest}
	}
	return segs, nil
}

// match reports whether rawPath, a path as sent, matches the route, and
// appends the values of its parameters to params. The path is split on
// its slashes as sent, and then each segment is decoded, as Go's
// http.ServeMux does: "/api%2Fv1.0/servers/alpha" has three segments, and
// its first is "api/v1.0", not "api". So a {name} may hold an encoded
// "/", and a rule on the path as sent, in a proxy in front, sees the path
// the route sees. A {name...} gets the rest of the path, decoded whole.
//
// A value is a slice of the path unless its segment holds a %-escape:
// matching a path with none allocates nothing.
func (rt *compiledRoute) match(rawPath string, params []Param) ([]Param, bool) {
	rest, ok := strings.CutPrefix(rawPath, "/")
	if !ok {
		return params, false
	}
	for i, seg := range rt.segments {
		if seg.rest {
			value, ok := unescape(rest)
			if !ok {
				return params, false
			}
			return append(params, Param{seg.param, value}), true
		}
		raw, after, more := strings.Cut(rest, "/")
		part, ok := unescape(raw)
		switch {
		case !ok:
			return params, false
		case seg.param == "" && part != seg.literal:
			return params, false
		case seg.param != "" && part == "":
			return params, false
		case seg.param != "":
			params = append(params, Param{seg.param, part})
		}
		if i == len(rt.segments)-1 {
			return params, !more // the path must end with the pattern
		}
		if !more {
			return params, false
		}
		rest = after
	}
	return params, false
}

// unescape decodes the %-escapes of part of a path. It reports false for
// a bad escape, which our Server refuses before any route sees it.
func unescape(raw string) (string, bool) {
	if strings.IndexByte(raw, '%') < 0 {
		return raw, true
	}
	s, err := url.PathUnescape(raw)
	return s, err == nil
}

// takes reports whether the route takes method.
func (rt *compiledRoute) takes(method string) bool {
	return rt.Method == AnyMethod || rt.Method == method ||
		(method == http.MethodHead && rt.Method == http.MethodGet)
}

// ServeWSGI sends the request to the first route that matches it.
func (r *Router) ServeWSGI(env *Environ, start StartResponse) []byte {
	var allowed []string
	for i := range r.routes {
		rt := &r.routes[i]
		params, ok := rt.match(env.RawPath, env.Params[:0])
		if !ok {
			continue
		}
		if rt.takes(env.Method) {
			env.Params = params
			return rt.App.ServeWSGI(env, start)
		}
		allowed = append(allowed, rt.Method)
		if rt.Method == http.MethodGet {
			allowed = append(allowed, http.MethodHead)
		}
	}
	if allowed == nil {
		return r.notFound.ServeWSGI(env, start)
	}
	slices.Sort(allowed)
	allow := strings.Join(slices.Compact(allowed), ", ")
	_ = start(http.StatusMethodNotAllowed, Header{{"Allow", allow}})
	return fmt.Appendf(nil, "405 Method Not Allowed: %s takes %s, not %s\n", quoteShort(env.Path), allow, quoteShort(env.Method))
}
