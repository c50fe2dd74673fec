package report

import (
	"fmt"
	"math"
	"strconv"
)

// roundSig rounds v to n significant digits.
func roundSig(v float64, n int) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	exp := math.Floor(math.Log10(math.Abs(v)))
	scale := math.Pow(10, float64(n-1)-exp)
	return math.Round(v*scale) / scale
}

// sig formats v with n significant digits, keeping trailing zeros
// ("2.10", "23.1", "456", "4560").
func sig(v float64, n int) string {
	v = roundSig(v, n)
	if v == 0 {
		return "0"
	}
	digits := int(math.Floor(math.Log10(math.Abs(v))))
	decimals := max(n-1-digits, 0)
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// scaled formats v in the largest unit it reaches, with 3 significant
// digits. units are in ascending order with their size in base units.
func scaled(v float64, units []unitScale) string {
	// Choose the unit by the rounded value, so that 999.7 µs is "1.00 ms".
	rounded := roundSig(v, 3)
	u := units[0]
	for _, cand := range units[1:] {
		if math.Abs(rounded) >= cand.size {
			u = cand
		}
	}
	return sig(v/u.size, 3) + " " + u.name
}

type unitScale struct {
	name string
	size float64
}

var timeUnits = []unitScale{{"ns", 1e-9}, {"µs", 1e-6}, {"ms", 1e-3}, {"s", 1}}

// FormatDuration formats seconds with 3 significant digits in ns, µs, ms
// or s: "9.09 µs", "1.40 ms".
func FormatDuration(sec float64) string { return scaled(sec, timeUnits) }

// FormatBytes formats a byte count: "16 B", "912 B", "6.69 KiB", "128 KiB".
func FormatBytes(b float64) string {
	if b < 1024 {
		return strconv.FormatFloat(math.Round(b), 'f', 0, 64) + " B"
	}
	return scaled(b, []unitScale{{"B", 1}, {"KiB", 1024}, {"MiB", 1024 * 1024}, {"GiB", 1024 * 1024 * 1024}})
}

// FormatCount formats allocations per operation: "75", "12.5", "1234".
func FormatCount(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	return strconv.FormatFloat(roundSig(v, 3), 'f', -1, 64)
}

// FormatRatio formats a ratio with 3 significant digits: "2.10×".
func FormatRatio(r float64) string { return sig(r, 3) + "×" }

// formatP formats a p-value with 2 significant digits: "p=0.41", "p=0.065".
func formatP(p float64) string {
	return "p=" + strconv.FormatFloat(roundSig(p, 2), 'f', -1, 64)
}

// timeCell is the sec/op column: median ± CI as benchstat prints it, and
// the number of samples when it is too small.
func timeCell(m *Measure) string {
	s := FormatDuration(m.Summary.Center) + " ± " + m.Summary.PctRangeString()
	if m.N() < MinSamples {
		s += fmt.Sprintf(" (n=%d)", m.N())
	}
	return s
}

func unitCell(row *Row, unit string, format func(float64) string) string {
	m, ok := row.Units[unit]
	if !ok {
		return "?"
	}
	return format(m.Summary.Center)
}

// ratioCell is a ratio column: "—" when it does not apply, "no row" when
// the other system has no row for the workload, the ratio when the
// difference is significant, else "~ (p=…)".
func ratioCell(r Ratio) string {
	switch {
	case r.Against == "":
		return "—"
	case r.Other == nil:
		return "no row"
	}
	var s string
	if r.Significant() {
		s = FormatRatio(r.Value)
	} else {
		s = "~ (" + formatP(r.Cmp.P) + ")"
	}
	if r.Fallback != "" {
		s += " vs " + r.Fallback
	}
	return s
}

// ratioWords says a significant ratio in words: "2.10× slower than net-rpc",
// "1.25× faster than 01-http-add". ok is false when the ratio is not
// significant or does not apply.
func ratioWords(r Ratio) (string, bool) {
	if r.Against == "" || !r.Significant() {
		return "", false
	}
	against := displayName(r.Against)
	if r.Other.Conns != "" {
		against += " (" + r.Other.Conns + ")"
	}
	if r.Value >= 1 {
		return FormatRatio(r.Value) + " slower than " + against, true
	}
	return FormatRatio(1/r.Value) + " faster than " + against, true
}

// displayName names a system in a sentence: "the floor", "net/rpc",
// "02-json-tcp".
func displayName(sys string) string {
	switch sys {
	case floorSystem:
		return "the floor"
	case netRPCSystem:
		return "net/rpc"
	}
	return sys
}
