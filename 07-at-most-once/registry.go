package atmostonce

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"unicode"
)

// registry is the route table: it maps the name a call gives to the method
// that answers it. It is safe for use by many goroutines: a service may be
// registered while connections look names up, as with net/rpc. The zero
// value is an empty table.
type registry struct {
	mu    sync.RWMutex // protects funcs
	funcs map[string]*function
}

// lookup returns the function that answers to name.
func (r *registry) lookup(name string) (*function, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.funcs[name]
	return f, ok
}

// table returns a copy of the table, for a caller that wants to range
// over it.
func (r *registry) table() map[string]*function {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return maps.Clone(r.funcs)
}

// function is an exported method of a registered service, bound to the
// service, with the types of its parameters.
type function struct {
	goName string         // Service.GetTime, for messages
	fn     reflect.Value  // the method, bound to the service value
	params []reflect.Type // the wire's parameters: not the context
	ctxIn  bool           // the method's first parameter is a context.Context
	errOut bool           // the method's last result is an error
}

// Skipped is an exported method that Register left out of the route table,
// and why.
type Skipped struct {
	Method string // the Go name, with its type's: atmostonce.Service.Describe
	Reason string
}

// String writes the method and the reason: "Type.Method: reason".
func (s Skipped) String() string {
	return s.Method + ": " + s.Reason
}

// The Go types the wire carries, and the names the wire gives them.
var (
	errorType   = reflect.TypeFor[error]()
	contextType = reflect.TypeFor[context.Context]()
	wireTypes   = map[reflect.Type]string{
		reflect.TypeFor[int]():     "int",
		reflect.TypeFor[float64](): "float",
		reflect.TypeFor[string]():  "str",
		reflect.TypeFor[any]():     "any value",
	}
)

// register adds every callable exported method of service to the registry,
// as the article builds its table from dir(mycode), and returns the
// exported methods it skipped, with the reason for each. It adds nothing
// if a name is taken or no method is callable.
func (r *registry) register(service any) ([]Skipped, error) {
	v := reflect.ValueOf(service)
	if !v.IsValid() {
		return nil, errors.New("register: the service is nil")
	}
	typeName := strings.TrimPrefix(v.Type().String(), "*")
	r.mu.Lock()
	defer r.mu.Unlock()
	found := map[string]*function{}
	var skipped []Skipped
	for m, fn := range v.Methods() {
		goName := typeName + "." + m.Name
		if reason := unsupported(fn.Type()); reason != "" {
			skipped = append(skipped, Skipped{goName, reason})
			continue
		}
		name := snakeCase(m.Name)
		for _, table := range []map[string]*function{r.funcs, found} {
			if other, taken := table[name]; taken {
				return skipped, fmt.Errorf("register %s: %s and %s both answer to %s", typeName, other.goName, goName, name)
			}
		}
		found[name] = newFunction(goName, fn)
	}
	skipped = append(skipped, pointerMethods(v.Type())...)
	if len(found) == 0 {
		return skipped, fmt.Errorf("register %s: no exported method can be called over the wire", typeName)
	}
	if r.funcs == nil {
		r.funcs = map[string]*function{}
	}
	maps.Copy(r.funcs, found)
	return skipped, nil
}

// newFunction wraps a bound method that unsupported has accepted.
func newFunction(goName string, fn reflect.Value) *function {
	t := fn.Type()
	f := &function{goName: goName, fn: fn, ctxIn: takesContext(t), errOut: t.NumOut() == 2}
	for i := range t.NumIn() {
		if i > 0 || !f.ctxIn {
			f.params = append(f.params, t.In(i))
		}
	}
	return f
}

// snakeCase returns the name a Go method answers to: its words in lower
// case, joined by "_". A word starts at an upper-case letter that follows a
// lower-case letter or a digit, or that ends a run of capitals and is
// followed by a lower-case letter. Sum answers to sum, GetTime to get_time,
// HTTPGet to http_get.
func snakeCase(goName string) string {
	runes := []rune(goName)
	var b strings.Builder
	for i, r := range runes {
		if i > 0 && unicode.IsUpper(r) {
			prev := runes[i-1]
			nextLower := i+1 < len(runes) && unicode.IsLower(runes[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// takesContext reports whether a method of type t takes a context.Context
// first: it is given the call's, with its caller's deadline, as net/http
// gives a handler r.Context().
func takesContext(t reflect.Type) bool {
	return t.NumIn() > 0 && t.In(0) == contextType
}

// unsupported says why a method of type t cannot be called over the wire,
// or returns "" if it can: every parameter is a wire type, after a
// context.Context if it takes one first, and it returns a wire type, or a
// wire type and an error.
func unsupported(t reflect.Type) string {
	if t.IsVariadic() {
		return "it is variadic, and a route takes a fixed number of arguments"
	}
	first := 0
	if takesContext(t) {
		first = 1
	}
	for i := first; i < t.NumIn(); i++ {
		if !isWireType(t.In(i)) {
			return fmt.Sprintf("parameter %d is %s; the wire carries int, float64 and string, or any of them as any", i+1, t.In(i))
		}
	}
	switch {
	case t.NumOut() == 1 && isWireType(t.Out(0)):
	case t.NumOut() == 2 && isWireType(t.Out(0)) && t.Out(1) == errorType:
	default:
		var outs []string
		for out := range t.Outs() {
			outs = append(outs, out.String())
		}
		return fmt.Sprintf("it returns (%s); a method returns int, float64, string or any, and may add an error", strings.Join(outs, ", "))
	}
	return ""
}

// isWireType reports whether values of type t can travel: int, float64,
// string, or any.
func isWireType(t reflect.Type) bool {
	_, ok := wireTypes[t]
	return ok
}

// pointerMethods returns the methods that t's pointer has and t has not:
// registered as a value, a service cannot offer them.
func pointerMethods(t reflect.Type) []Skipped {
	if t.Kind() == reflect.Pointer {
		return nil
	}
	var skipped []Skipped
	for m := range reflect.PointerTo(t).Methods() {
		if _, ok := t.MethodByName(m.Name); !ok {
			skipped = append(skipped, Skipped{t.String() + "." + m.Name, "it has a pointer receiver: register a *" + t.String() + " to offer it"})
		}
	}
	return skipped
}

// check reports whether args fit f's parameters: an error if not, before
// anything runs.
func (f *function) check(args []any) error {
	if len(args) != len(f.params) {
		return fmt.Errorf("takes %s, got %d", arguments(len(f.params)), len(args))
	}
	for i, arg := range args {
		if !reflect.TypeOf(arg).AssignableTo(f.params[i]) {
			return fmt.Errorf("argument %d: want %s, got %s", i+1, wireTypes[f.params[i]], describe(arg))
		}
	}
	return nil
}

// call calls f with ctx, if it takes one, and args, which check has
// accepted. A panic inside f comes back as an error.
func (f *function) call(ctx context.Context, args []any) (res any, err error) {
	in := make([]reflect.Value, 0, len(args)+1)
	if f.ctxIn {
		in = append(in, reflect.ValueOf(ctx))
	}
	for _, arg := range args {
		in = append(in, reflect.ValueOf(arg))
	}
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("panicked: %v", p)
		}
	}()
	out := f.fn.Call(in)
	if f.errOut && !out[1].IsNil() {
		return nil, out[1].Interface().(error)
	}
	return out[0].Interface(), nil
}

// arguments writes "1 argument" or "n arguments".
func arguments(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}
