package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/perf/benchmath"
)

var update = flag.Bool("update", false, "rewrite golden files")

const fixture = "testdata/raw.txt"

// testMeta is the run description the golden page is written with.
var testMeta = Meta{
	Command:    "go test -run '^$' -bench . -benchmem -count 6 -timeout 60m .",
	GoVersion:  "go version go1.26.8 linux/amd64",
	Machine:    "Linux 6.18.44 x86_64",
	Cores:      "2",
	Date:       "2026-11-25",
	LoadBefore: "0.31 0.42 0.55 1/99 6327",
	LoadAfter:  "2.05 1.61 0.98 1/101 7012",
	RawPath:    "bench/results/raw.txt",
	SVGLink:    "img/benchmarks.svg",
	Generator:  "make bench-report",
}

func parseFixture(t *testing.T) *Data {
	t.Helper()
	f, err := os.Open(fixture)
	require.NoError(t, err)
	defer f.Close()
	d, err := Parse(f, fixture)
	require.NoError(t, err)
	return d
}

func page(t *testing.T, d *Data, load []byte) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, WritePage(&b, d, testMeta, load))
	return b.String()
}

func findRow(t *testing.T, d *Data, workload, sys, conns string) *Row {
	t.Helper()
	for _, r := range d.Rows {
		if r.Workload == workload && r.System == sys && r.Conns == conns {
			return r
		}
	}
	require.Failf(t, "no row", "%s %s %s", workload, sys, conns)
	return nil
}

// tableRow returns the cells of the markdown table line whose first cells
// are first, within the section that starts with heading.
func tableRow(t *testing.T, pg, heading string, first ...string) []string {
	t.Helper()
	start := strings.Index(pg, "\n"+heading+"\n")
	require.GreaterOrEqual(t, start, 0, "heading %q", heading)
	section := pg[start+len(heading)+2:]
	if next := strings.Index(section, "\n#"); next >= 0 {
		section = section[:next]
	}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) >= len(first) && slices.Equal(cells[:len(first)], first) {
			return cells
		}
	}
	require.Failf(t, "no table row", "%q under %q", first, heading)
	return nil
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	assert.Equal(t, string(want), string(got), "%s differs: run go test -update and read the diff", path)
}

func TestGoldenPage(t *testing.T) {
	golden(t, "benchmarks.md.golden", []byte(page(t, parseFixture(t), nil)))
}

func TestGoldenSVG(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteSVG(&b, parseFixture(t)))
	golden(t, "benchmarks.svg.golden", b.Bytes())
}

func TestSameInputSameBytes(t *testing.T) {
	var p1, p2, s1, s2 bytes.Buffer
	d1, d2 := parseFixture(t), parseFixture(t)
	require.NoError(t, WritePage(&p1, d1, testMeta, nil))
	require.NoError(t, WritePage(&p2, d2, testMeta, nil))
	require.NoError(t, WriteSVG(&s1, d1))
	require.NoError(t, WriteSVG(&s2, d2))
	assert.Equal(t, p1.String(), p2.String())
	assert.Equal(t, s1.String(), s2.String())
}

// TestNotSignificantIsNeverARatio checks every ratio cell of the page
// against a U test the test runs itself: where p >= 0.05 the cell shows
// "~" and the p-value and never a ratio, and no sentence names the pair;
// where p < 0.05 it shows a ratio.
func TestNotSignificantIsNeverARatio(t *testing.T) {
	d := parseFixture(t)
	pg := page(t, d, nil)
	var insignificant int
	for _, row := range d.Rows {
		for col, r := range d.Ratios(row) {
			if r.Other == nil {
				continue
			}
			p := benchmath.AssumeNothing.Compare(row.Time().Sample, r.Other.Time().Sample).P
			cell := ratioCell(r)
			_, said := ratioWords(r)
			if p >= 0.05 {
				insignificant++
				assert.True(t, strings.HasPrefix(cell, "~ (p="), "%s %s column %d: %q (p=%v)", row.Workload, row.Label(), col, cell, p)
				assert.NotContains(t, cell, "×", "%s %s column %d", row.Workload, row.Label(), col)
				assert.False(t, said, "%s %s column %d: a sentence claims a difference", row.Workload, row.Label(), col)
			} else {
				assert.Contains(t, cell, "×", "%s %s column %d (p=%v)", row.Workload, row.Label(), col, p)
				assert.True(t, said)
			}
		}
	}
	// The fixture holds such pairs on purpose; if it stops, this test
	// proves nothing.
	assert.GreaterOrEqual(t, insignificant, 3)

	// The same, as the reader sees it: net/rpc and jsonrpc on Add, 02 and
	// 03 on Add, 03 and 04 on Echo1K.
	assert.Equal(t, "~ (p=0.48)", tableRow(t, pg, "## Add", "jsonrpc")[5])
	assert.Equal(t, "~ (p=0.82)", tableRow(t, pg, "## Add", "03-custom-protocol")[6])
	assert.Equal(t, "~ (p=0.13)", tableRow(t, pg, "## Echo1K", "04-gob-binary")[6])
	assert.Equal(t, "~ (p=0.13)", tableRow(t, pg, "### 04-gob-binary", "Echo1K")[6])
	assert.NotRegexp(t, `(?m)^Add: .*than 02-json-tcp`, sectionOf(t, pg, "### 03-custom-protocol"))
	assert.NotRegexp(t, `(?m)^Echo1K: .*than 03-custom-protocol`, sectionOf(t, pg, "### 04-gob-binary"))
}

func sectionOf(t *testing.T, pg, heading string) string {
	t.Helper()
	start := strings.Index(pg, "\n"+heading+"\n")
	require.GreaterOrEqual(t, start, 0, heading)
	s := pg[start+1:]
	if next := strings.Index(s[len(heading):], "\n#"); next >= 0 {
		s = s[:len(heading)+next]
	}
	return s
}

func TestLoadSectionKeptByteForByte(t *testing.T) {
	d := parseFixture(t)
	// Odd bytes on purpose: leading blank lines, trailing spaces, a tab,
	// no newline before the end marker, text that looks like a marker.
	kept := "\n  ## old heading  \n\n| stage | req/s |\n|---|---|\n| 02\t| 41 000 |\nbench-load:end -->\nlast line, no newline  "
	old := "anything before\n" + LoadBegin + "\n" + kept + LoadEnd + "\nanything after\n"

	load, ok := LoadSection([]byte(old))
	require.True(t, ok)
	require.Equal(t, kept, string(load))

	pg := page(t, d, load)
	assert.Contains(t, pg, "\n"+LoadBegin+"\n"+kept+LoadEnd+"\n")
	again, ok := LoadSection([]byte(pg))
	require.True(t, ok)
	assert.Equal(t, kept, string(again), "a second run keeps it too")

	t.Run("no markers gives the placeholder", func(t *testing.T) {
		_, ok := LoadSection([]byte("# a page\nno markers\n"))
		assert.False(t, ok)
		_, ok = LoadSection([]byte(LoadEnd + "\n" + LoadBegin + "\n"))
		assert.False(t, ok, "markers out of order")
		assert.Contains(t, page(t, d, nil), LoadBegin+"\n"+LoadPlaceholder+LoadEnd+"\n")
	})
}

func TestRowsFollowTheOrder(t *testing.T) {
	raw, err := os.ReadFile(fixture)
	require.NoError(t, err)
	// Shuffle the benchmark lines deterministically (reverse them), so the
	// order cannot come from the input.
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	var head, bench []string
	for _, l := range lines {
		if strings.HasPrefix(l, "Benchmark") {
			bench = append(bench, l)
		} else {
			head = append(head, l)
		}
	}
	slices.Reverse(bench)
	d, err := Parse(strings.NewReader(strings.Join(append(head[:4], bench...), "\n")+"\n"), "reversed")
	require.NoError(t, err)

	for _, wl := range Workloads {
		var got []string
		for _, r := range d.RowsOf(wl) {
			got = append(got, r.Label())
		}
		var want []string
		for _, sys := range Systems {
			for _, conns := range []string{"", "shared", "per-caller"} {
				r := &Row{System: sys, Conns: conns}
				if slices.ContainsFunc(d.Rows, func(o *Row) bool { return o.Workload == wl && o.System == sys && o.Conns == conns }) {
					want = append(want, r.Label())
				}
			}
		}
		assert.Equal(t, want, got, wl)
	}
	assert.Equal(t, Workloads, d.WorkloadsPresent())

	// And on the page: the Add table lists the systems in Systems' order.
	pg := page(t, d, nil)
	var onPage []string
	for _, line := range strings.Split(sectionOf(t, pg, "## Add"), "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| system") {
			onPage = append(onPage, strings.Split(strings.Trim(line, "| "), " | ")[0])
		}
	}
	// The fixture is a run from before stage 07: the page lists the
	// systems it has, in Systems' order.
	present := slices.DeleteFunc(slices.Clone(Systems), func(sys string) bool {
		return !slices.ContainsFunc(d.Rows, func(r *Row) bool { return r.System == sys })
	})
	assert.Equal(t, present, onPage)
}

func TestStageBefore(t *testing.T) {
	for sys, want := range map[string]string{
		"01-http-add": "", "02-json-tcp": "01-http-add", "06-wsgi-router": "05-async-callback",
		"07-at-most-once": "05-async-callback",
		"floor":           "", "net-rpc": "", "grpc": "",
	} {
		assert.Equal(t, want, StageBefore(sys), sys)
	}

	d := parseFixture(t)
	pg := page(t, d, nil)
	for _, row := range d.Rows {
		if row.System != "01-http-add" {
			continue
		}
		r := d.Ratios(row)[2]
		assert.Empty(t, r.Against, "%s: stage 01 has no stage before", row.Label())
		assert.Nil(t, r.Other)
	}
	assert.Equal(t, "—", tableRow(t, pg, "## Add", "01-http-add")[6])
	assert.Equal(t, "—", tableRow(t, pg, "### 01-http-add", "Add")[6])
	assert.Equal(t, "—", tableRow(t, pg, "### 01-http-add", "AddParallel (shared)")[6])
	assert.NotContains(t, sectionOf(t, pg, "### 01-http-add"), "faster than")
	// Stage 02's Echo rows have no stage-01 row to set against.
	assert.Equal(t, "no row", tableRow(t, pg, "## Echo1K", "02-json-tcp")[6])
	// Stage 02's Add row has one.
	assert.Contains(t, tableRow(t, pg, "## Add", "02-json-tcp")[6], "×")
}

func TestAddParallelComparesSameModeElseShared(t *testing.T) {
	d := parseFixture(t)
	// 03 per-caller against 02 per-caller, and against the floor's only
	// row, per-caller: the same mode.
	r := d.Compare(findRow(t, d, "AddParallel", "03-custom-protocol", "per-caller"), "02-json-tcp")
	assert.Equal(t, "per-caller", r.Other.Conns)
	assert.Empty(t, r.Fallback)
	r = d.Compare(findRow(t, d, "AddParallel", "03-custom-protocol", "per-caller"), "floor")
	assert.Equal(t, "per-caller", r.Other.Conns)
	assert.Empty(t, r.Fallback)
	// 02 per-caller against net/rpc, which has only a shared row.
	r = d.Compare(findRow(t, d, "AddParallel", "02-json-tcp", "per-caller"), "net-rpc")
	assert.Equal(t, "shared", r.Other.Conns)
	assert.Equal(t, "shared", r.Fallback)
	assert.True(t, strings.HasSuffix(ratioCell(r), " vs shared"), ratioCell(r))
	// 05 shared against the floor, which has only a per-caller row.
	r = d.Compare(findRow(t, d, "AddParallel", "05-async-callback", "shared"), "floor")
	assert.Equal(t, "per-caller", r.Fallback)
	assert.True(t, strings.HasSuffix(ratioCell(r), " vs per-caller"), ratioCell(r))
	assert.Contains(t, page(t, d, nil), "A ratio marked `vs shared`")
}

// TestCIMatchesBenchstat pins the sec/op summaries to what benchstat
// prints for the same file. Expected lines obtained once with
//
//	cd bench && go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da internal/report/testdata/raw.txt
//
// which printed, among others:
//
//	Add/sys=net-rpc-2                              17.68µ ± 7%
//	AddParallel/sys=floor/conns=per-caller-2       5.138µ ± 1%
//	Echo64K/sys=grpc-2                             224.4µ ±  ∞ ¹
func TestCIMatchesBenchstat(t *testing.T) {
	d := parseFixture(t)
	for _, c := range []struct {
		workload, sys, conns string
		center               float64 // benchstat's, to its 4 digits
		ci, cell             string
	}{
		{"Add", "net-rpc", "", 17.68e-6, "7%", "17.7 µs ± 7%"},
		{"AddParallel", "floor", "per-caller", 5.138e-6, "1%", "5.14 µs ± 1%"},
		{"Echo64K", "grpc", "", 224.4e-6, "∞", "224 µs ± ∞ (n=3)"},
	} {
		m := findRow(t, d, c.workload, c.sys, c.conns).Time()
		assert.InDelta(t, c.center, m.Summary.Center, c.center*0.0005, "%s %s", c.workload, c.sys)
		assert.Equal(t, c.ci, m.Summary.PctRangeString(), "%s %s", c.workload, c.sys)
		assert.Equal(t, c.cell, timeCell(m))
	}
}

func TestFewSamplesWarned(t *testing.T) {
	d := parseFixture(t)
	require.Len(t, d.Warnings, 1)
	assert.Contains(t, d.Warnings[0], "Echo64K grpc has 3 samples")
	pg := page(t, d, nil)
	assert.Contains(t, pg, "- Echo64K grpc has 3 samples, fewer than 6")
	assert.Equal(t, "224 µs ± ∞ (n=3)", tableRow(t, pg, "## Echo64K", "grpc")[1])
}

func TestPageSections(t *testing.T) {
	pg := page(t, parseFixture(t), nil)
	assert.True(t, strings.HasPrefix(pg, "<!-- Generated by `make bench-report`"), "first line says it is generated")
	var last int
	for _, h := range []string{
		"## What is measured", "## The run", "## Add", "## AddParallel", "## Echo1K", "## Echo64K",
		"## Stage by stage", "### 01-http-add", "### 02-json-tcp", "### 03-custom-protocol",
		"### 04-gob-binary", "### 05-async-callback", "### 06-wsgi-router", "### 07-at-most-once",
		"## Chart", LoadBegin, LoadEnd, "## How to read this page", "## Regenerate",
	} {
		i := strings.Index(pg, "\n"+h+"\n")
		if assert.Greater(t, i, last, "%q missing or out of order", h) {
			last = i
		}
	}
	for _, s := range []string{
		"![Median time per operation", "(img/benchmarks.svg)", "`make bench-report`", "bench/results/raw.txt",
		testMeta.Command, testMeta.GoVersion, "0.31 0.42 0.55 before, 2.05 1.61 0.98 after", "2026-11-25",
		"Oxide Virtual Turin-like Processor",
	} {
		assert.Contains(t, pg, s)
	}
	for sys := range systemNotes {
		assert.Contains(t, Systems, sys, "a note for an unknown system")
	}
}

func TestSVGIsWellFormed(t *testing.T) {
	d := parseFixture(t)
	var b bytes.Buffer
	require.NoError(t, WriteSVG(&b, d))
	dec := xml.NewDecoder(&b)
	var root string
	var rects, texts int
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				assert.Equal(t, "http://www.w3.org/2000/svg", se.Name.Space)
			}
			switch se.Name.Local {
			case "rect":
				rects++
			case "text":
				texts++
			}
		}
	}
	assert.Equal(t, "svg", root)
	// A background, two legend keys and one bar per row.
	assert.Equal(t, 3+len(d.Rows), rects)
	assert.Greater(t, texts, 2*len(d.Rows))
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{FormatDuration(9.089e-6), "9.09 µs"},
		{FormatDuration(46.27e-6), "46.3 µs"},
		{FormatDuration(898.37e-6), "898 µs"},
		{FormatDuration(999.7e-6), "1.00 ms"},
		{FormatDuration(1.39987e-3), "1.40 ms"},
		{FormatDuration(456e-9), "456 ns"},
		{FormatDuration(2.5), "2.50 s"},
		{FormatBytes(16), "16 B"},
		{FormatBytes(808.5), "809 B"},
		{FormatBytes(1104), "1.08 KiB"},
		{FormatBytes(131100), "128 KiB"},
		{FormatCount(2), "2"},
		{FormatCount(12.5), "12.5"},
		{FormatCount(1234.4), "1234"},
		{FormatRatio(2.1), "2.10×"},
		{FormatRatio(23.14), "23.1×"},
		{FormatRatio(0.4333), "0.433×"},
		{formatP(0.4848), "p=0.48"},
		{formatP(0.0649), "p=0.065"},
		{formatP(1), "p=1"},
	} {
		assert.Equal(t, c.want, c.got)
	}
}

func TestNiceAxis(t *testing.T) {
	for _, c := range []struct{ top, step, max float64 }{
		{46.3e-6, 10e-6, 50e-6},
		{40e-6, 10e-6, 40e-6},
		{1.65e-3, 0.5e-3, 2e-3},
		{5.14e-6, 2e-6, 6e-6},
	} {
		step, max := niceAxis(c.top)
		assert.InDelta(t, c.step, step, c.step*1e-9, "step for %v", c.top)
		assert.InDelta(t, c.max, max, c.max*1e-9, "max for %v", c.top)
		assert.GreaterOrEqual(t, max, c.top*(1-1e-9))
		assert.False(t, math.IsInf(max, 0))
	}
}
