package httpadd

import (
	"math/big"
	"net/url"
	"strconv"
	"testing"
)

// FuzzParseOperands feeds parseOperands arbitrary query strings. It must
// never panic, and when it accepts a query, the operands it returns must be
// exactly the integers the query spelled (or 0 for a missing one).
func FuzzParseOperands(f *testing.F) {
	for _, seed := range []string{
		"a=1&b=2", "", "a=5", "a=x", "a=1&a=2", "c=3", "a=%zz", "a=9223372036854775808",
		"a=-9223372036854775808&b=-1", "a=+1", "a=1;b=2", "&&&", "a", "a=&b=",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		a, b, err := parseOperands(rawQuery)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error must say what is wrong")
			}
			return
		}
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			t.Fatalf("accepted %q, which url.ParseQuery rejects: %v", rawQuery, err)
		}
		for name, got := range map[string]int{"a": a, "b": b} {
			values := q[name]
			switch len(values) {
			case 0:
				if got != 0 {
					t.Fatalf("%q: missing %s read as %d, want 0", rawQuery, name, got)
				}
			case 1:
				want, ok := new(big.Int).SetString(values[0], 10)
				if !ok || !want.IsInt64() || want.Int64() != int64(got) {
					t.Fatalf("%q: %s=%q read as %d", rawQuery, name, values[0], got)
				}
				if strconv.Itoa(got) != want.String() {
					t.Fatalf("%q: %s=%q read as %d", rawQuery, name, values[0], got)
				}
			default:
				t.Fatalf("%q: accepted %s given %d times", rawQuery, name, len(values))
			}
		}
		if len(q) > 2 {
			t.Fatalf("%q: accepted parameters other than a and b", rawQuery)
		}
	})
}
