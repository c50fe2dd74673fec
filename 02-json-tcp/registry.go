package jsontcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// registry maps a method name to the function that answers it. It is safe
// for use by many goroutines: register may be called at any time, while
// calls are being answered. The zero registry is empty and ready to use.
type registry struct {
	mu    sync.RWMutex // protects funcs
	funcs map[string]*function
}

// function is a Go function registered under a name, together with the
// names of its parameters, so that a caller can pass arguments the way
// Python does: by position, by keyword, or not at all when the parameter
// has a default. It does not change once registered, so any number of
// calls may use it at once.
type function struct {
	name    string
	fn      reflect.Value
	params  []param
	varArgs *param // the "*args" parameter, or nil
	varKw   *param // the "**kwargs" parameter, or nil
	errOut  bool   // the function's last result is an error
}

type param struct {
	name  string
	index int          // its place in the Go function's parameters
	typ   reflect.Type // its Go type, which the JSON argument must decode into
	// def is its default, as JSON, or nil if the caller must give it. It
	// is decoded afresh for every call: a decoded map or slice handed to
	// every call would be shared by all of them, Python's mutable-default
	// trap and a data race besides.
	def json.RawMessage
	// strict is whether what an argument decodes into (typ, or its element
	// type for *args and **kwargs) can hold a struct, whose unknown fields
	// encoding/json would drop in silence. Worked out once, in register.
	strict bool
}

var (
	errorType      = reflect.TypeFor[error]()
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	nameRE         = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// register adds fn to the registry under name. spec names fn's parameters,
// in order, one string each:
//
//	"a"         an argument the caller must give, by position or by keyword
//	"c=10"      an argument with a default, written in JSON after the "="
//	"*args"     any further positional arguments; the parameter is a slice
//	"**kwargs"  any further keyword arguments; the parameter is a map[string]T
//
// fn returns one result, or a result and an error.
func (r *registry) register(name string, fn any, spec ...string) error {
	f, err := newFunction(name, fn, spec)
	if err != nil {
		return fmt.Errorf("register %s: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.funcs[name]; dup {
		return fmt.Errorf("register %s: the name is taken", name)
	}
	if r.funcs == nil {
		r.funcs = map[string]*function{}
	}
	r.funcs[name] = f
	return nil
}

// lookup returns the function registered under name.
func (r *registry) lookup(name string) (*function, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.funcs[name]
	return f, ok
}

// names returns the registered names, sorted.
func (r *registry) names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.funcs))
}

func newFunction(name string, fn any, spec []string) (*function, error) {
	v := reflect.ValueOf(fn)
	t := v.Type()
	switch {
	case !nameRE.MatchString(name):
		return nil, errors.New("a method name is letters, digits and _")
	case t.Kind() != reflect.Func:
		return nil, fmt.Errorf("%s is not a function", t)
	case t.IsVariadic():
		return nil, errors.New(`a variadic function cannot be registered: take a slice and name it "*args"`)
	case t.NumIn() != len(spec):
		return nil, fmt.Errorf("the function takes %d parameters, but %d names were given", t.NumIn(), len(spec))
	case t.NumOut() == 2 && t.Out(1) != errorType, t.NumOut() < 1, t.NumOut() > 2:
		return nil, errors.New("the function must return a result, or a result and an error")
	}
	f := &function{name: name, fn: v, errOut: t.NumOut() == 2}
	seen := map[string]bool{}
	for i, s := range spec {
		p := param{index: i, typ: t.In(i)}
		var def string
		var hasDef bool
		p.name, def, hasDef = strings.Cut(s, "=")
		stars := len(p.name) - len(strings.TrimLeft(p.name, "*"))
		p.name = p.name[stars:]
		switch {
		case !nameRE.MatchString(p.name):
			return nil, fmt.Errorf("parameter %q: a name is letters, digits and _", s)
		case seen[p.name]:
			return nil, fmt.Errorf("parameter %q: named twice", p.name)
		case f.varKw != nil:
			return nil, fmt.Errorf("parameter %q: nothing may follow **%s", p.name, f.varKw.name)
		case stars > 0 && hasDef:
			return nil, fmt.Errorf("parameter %q: *args and **kwargs take no default", s)
		case stars == 1 && f.varArgs != nil:
			return nil, fmt.Errorf("parameter %q: only one *args, and *%s came first", s, f.varArgs.name)
		}
		seen[p.name] = true
		switch stars {
		case 0:
			if f.varArgs != nil {
				return nil, fmt.Errorf("parameter %q: named parameters come before *%s", p.name, f.varArgs.name)
			}
			p.strict = hasStruct(p.typ, map[reflect.Type]bool{})
			if hasDef {
				// Decoded here only to check it; each call decodes its own.
				if err := json.Unmarshal([]byte(def), reflect.New(p.typ).Interface()); err != nil {
					return nil, fmt.Errorf("parameter %q: default %s does not decode into %s: %v", p.name, def, p.typ, err)
				}
				p.def = json.RawMessage(def)
			} else if n := len(f.params); n > 0 && f.params[n-1].def != nil {
				return nil, fmt.Errorf("parameter %q: a parameter without a default cannot follow one with a default", p.name)
			}
			f.params = append(f.params, p)
		case 1:
			if p.typ.Kind() != reflect.Slice {
				return nil, fmt.Errorf("parameter %q: *%s must be a slice, not %s", s, p.name, p.typ)
			}
			p.strict = hasStruct(p.typ.Elem(), map[reflect.Type]bool{})
			f.varArgs = &p
		case 2:
			if p.typ.Kind() != reflect.Map || p.typ.Key().Kind() != reflect.String {
				return nil, fmt.Errorf("parameter %q: **%s must be a map[string]T, not %s", s, p.name, p.typ)
			}
			p.strict = hasStruct(p.typ.Elem(), map[reflect.Type]bool{})
			f.varKw = &p
		default:
			return nil, fmt.Errorf("parameter %q: one or two stars, not %d", s, stars)
		}
	}
	return f, nil
}

// call binds the arguments of a request to f's parameters, as Python would,
// and calls f. A panic, inside f or in a parameter type's UnmarshalJSON,
// comes back as an error.
func (f *function) call(args []json.RawMessage, kwargs map[string]json.RawMessage) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("panicked: %v", p)
		}
	}()
	in := make([]reflect.Value, f.fn.Type().NumIn())

	// Positional arguments fill the named parameters in order; any more go
	// to *args, if there is one.
	for i, raw := range args {
		if i < len(f.params) {
			p := f.params[i]
			if in[p.index], err = decodeArg(p.name, p.typ, p.strict, raw); err != nil {
				return nil, err
			}
			continue
		}
		if f.varArgs == nil {
			return nil, fmt.Errorf("takes %d arguments by position, got %d", len(f.params), len(args))
		}
		if i == len(f.params) {
			in[f.varArgs.index] = reflect.MakeSlice(f.varArgs.typ, 0, len(args)-i)
		}
		v, err := decodeArg(fmt.Sprintf("*%s[%d]", f.varArgs.name, i-len(f.params)), f.varArgs.typ.Elem(), f.varArgs.strict, raw)
		if err != nil {
			return nil, err
		}
		in[f.varArgs.index] = reflect.Append(in[f.varArgs.index], v)
	}

	// Keyword arguments fill the parameters they name; any others go to
	// **kwargs, if there is one. Sorted, so that errors do not depend on
	// the order Go walks a map in.
	for _, name := range slices.Sorted(maps.Keys(kwargs)) {
		raw := kwargs[name]
		if i := slices.IndexFunc(f.params, func(p param) bool { return p.name == name }); i >= 0 {
			p := f.params[i]
			if in[p.index].IsValid() {
				return nil, fmt.Errorf("argument %s given by position and by keyword", quoteName(name))
			}
			if in[p.index], err = decodeArg(name, p.typ, p.strict, raw); err != nil {
				return nil, err
			}
			continue
		}
		if f.varKw == nil {
			return nil, fmt.Errorf("no parameter named %s", quoteName(name))
		}
		kw := &in[f.varKw.index]
		if !kw.IsValid() {
			*kw = reflect.MakeMap(f.varKw.typ)
		}
		v, err := decodeArg(fmt.Sprintf("**%s[%s]", f.varKw.name, name), f.varKw.typ.Elem(), f.varKw.strict, raw)
		if err != nil {
			return nil, err
		}
		kw.SetMapIndex(reflect.ValueOf(name).Convert(f.varKw.typ.Key()), v)
	}

	// What is still unset takes its default, or is missing.
	for _, p := range f.params {
		if !in[p.index].IsValid() {
			if p.def == nil {
				return nil, fmt.Errorf("missing argument %s", quoteName(p.name))
			}
			if in[p.index], err = decodeArg(p.name, p.typ, p.strict, p.def); err != nil {
				return nil, err
			}
		}
	}
	if f.varArgs != nil && !in[f.varArgs.index].IsValid() {
		in[f.varArgs.index] = reflect.MakeSlice(f.varArgs.typ, 0, 0)
	}
	if f.varKw != nil && !in[f.varKw.index].IsValid() {
		in[f.varKw.index] = reflect.MakeMap(f.varKw.typ)
	}

	out := f.fn.Call(in)
	if f.errOut && !out[1].IsNil() {
		return nil, out[1].Interface().(error)
	}
	return out[0].Interface(), nil
}

// decodeArg decodes one JSON argument into a new value of type t, refusing
// unknown object fields if strict. Its error names the parameter and says
// what was expected and what came.
func decodeArg(name string, t reflect.Type, strict bool, raw json.RawMessage) (reflect.Value, error) {
	if string(raw) == "null" && !nullable(t) {
		// encoding/json would leave the zero value: null would read as 0.
		return reflect.Value{}, fmt.Errorf("argument %s: want %s, got null", quoteName(name), t)
	}
	if t == rawMessageType {
		return reflect.ValueOf(raw), nil // already checked: it is one JSON value
	}
	v := reflect.New(t)
	unmarshal := json.Unmarshal
	if strict {
		unmarshal = unmarshalStrict // a field the struct lacks is an error, not dropped
	}
	if err := unmarshal(raw, v.Interface()); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return reflect.Value{}, fmt.Errorf("argument %s: want %s, got %s", quoteName(name), t, shortJSON(raw))
		}
		return reflect.Value{}, fmt.Errorf("argument %s: %v", quoteName(name), err)
	}
	return v.Elem(), nil
}

// nullable reports whether JSON null has a meaning for a value of type t.
func nullable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		return true
	}
	return false
}

// quoteName quotes a parameter's name for an error message: 'b', as Python
// does, when it is a plain name, and Go-quoted when it is anything else.
func quoteName(name string) string {
	if len(name) <= 40 && !strings.ContainsAny(name, "'\\") && utf8.ValidString(name) && !strings.ContainsFunc(name, unicode.IsControl) {
		return "'" + name + "'"
	}
	return quoteShort(name)
}

// shortJSON returns raw for an error message, cut to a readable length.
func shortJSON(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "..."
	}
	return string(raw)
}

// hasStruct reports whether a value of type t can hold a struct, whose
// unknown JSON fields encoding/json would drop in silence. seen holds the
// types already on the way down: a type may contain itself (type tree
// map[string]tree), and without it the walk would never end.
func hasStruct(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false // whatever t holds is being looked at further up
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Struct:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return hasStruct(t.Elem(), seen)
	case reflect.Map:
		return hasStruct(t.Key(), seen) || hasStruct(t.Elem(), seen)
	}
	return false
}
