// Package report turns the output of the benchmarks in bench/ into the
// page docs/benchmarks.md and the chart docs/img/benchmarks.svg.
//
// Parse reads the raw output of `go test -bench . -benchmem -count 6`
// (golang.org/x/perf/benchfmt), groups it by workload, system and
// connection mode (benchproc), and summarises each group as benchstat does
// (benchmath.AssumeNothing: median, 95% confidence interval, Mann-Whitney U
// test). WritePage and WriteSVG draw the page and the chart from that one
// set of rows, so the two always show the same run.
//
// A ratio between two rows is shown only when the U test says their
// samples differ (p < 0.05); otherwise the page shows "~" and the p-value,
// as benchstat does. Nothing in this package decides what is significant
// except significant.
package report

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
	"golang.org/x/perf/benchproc"
)

// Units read from each benchmark line. benchfmt turns ns/op into sec/op.
const (
	UnitTime   = "sec/op"
	UnitBytes  = "B/op"
	UnitAllocs = "allocs/op"
)

// Confidence is the level of every confidence interval (benchstat's default).
const Confidence = 0.95

// MinSamples is the number of samples a benchmark needs for a finite 95%
// interval around its median; fewer draws a warning.
const MinSamples = 6

// Workloads lists the workloads in page order.
var Workloads = []string{"Add", "AddParallel", "Echo1K", "Echo64K"}

// Systems lists the systems in page order: the floor, the stages, then
// the standard peers.
var Systems = []string{
	"floor",
	"01-http-add", "02-json-tcp", "03-custom-protocol",
	"04-gob-binary", "05-async-callback", "06-wsgi-router", "07-at-most-once",
	"net-rpc", "jsonrpc", "net-http", "grpc",
}

// builtFrom names the stages built from a stage other than the one
// numbered before them: stage 07 goes where the articles stop, from
// stage 05's calls, not from stage 06's HTTP server.
var builtFrom = map[string]string{"07-at-most-once": "05-async-callback"}

// connsOrder lists the connection modes of AddParallel in page order.
var connsOrder = []string{"shared", "per-caller"}

// The systems the ratio columns set each row against.
const (
	floorSystem  = "floor"
	netRPCSystem = "net-rpc"
)

var stageName = regexp.MustCompile(`^([0-9]{2})-`)

// IsStage reports whether sys is one of the course's stages ("01-http-add").
func IsStage(sys string) bool { return stageName.MatchString(sys) }

// Measure is the sample of one unit for one row, summarised.
type Measure struct {
	Sample  *benchmath.Sample
	Summary benchmath.Summary
}

// N is the number of samples.
func (m *Measure) N() int { return len(m.Sample.Values) }

// Row is one benchmark: a workload run on one system, in one connection
// mode for AddParallel (Conns is "" for the other workloads).
type Row struct {
	Workload string
	System   string
	Conns    string
	Units    map[string]*Measure // by unit; UnitTime is always present
}

// Time is the row's sec/op measure.
func (r *Row) Time() *Measure { return r.Units[UnitTime] }

// Label names the row as the chart does: "02-json-tcp" or
// "02-json-tcp (shared)".
func (r *Row) Label() string {
	if r.Conns == "" {
		return r.System
	}
	return r.System + " (" + r.Conns + ")"
}

// Data is one parsed run.
type Data struct {
	Rows     []*Row            // in page order: workload, then system, then conns
	Config   map[string]string // file configuration: goos, goarch, cpu, pkg
	Warnings []string          // things the reader of the page should know
}

// Parse reads raw benchmark output. name is used in error messages.
func Parse(r io.Reader, name string) (*Data, error) {
	var pp benchproc.ProjectionParser
	proj, err := pp.Parse(".name,/sys,/conns", nil)
	if err != nil {
		return nil, err
	}
	fields := proj.Fields()
	fName, fSys, fConns := fields[0], fields[1], fields[2]

	type rowKey struct{ workload, sys, conns string }
	values := map[rowKey]map[string][]float64{}
	data := &Data{Config: map[string]string{}}
	reader := benchfmt.NewReader(r, name)
	for reader.Scan() {
		switch rec := reader.Result().(type) {
		case *benchfmt.SyntaxError:
			data.Warnings = append(data.Warnings, rec.Error())
		case *benchfmt.Result:
			for _, c := range rec.Config {
				if c.File {
					data.Config[c.Key] = strings.TrimSpace(string(c.Value))
				}
			}
			key := proj.Project(rec)
			k := rowKey{key.Get(fName), key.Get(fSys), key.Get(fConns)}
			if k.sys == "" {
				data.Warnings = append(data.Warnings,
					fmt.Sprintf("%s: benchmark %s has no /sys= key: skipped", posString(rec), rec.Name.Full()))
				continue
			}
			if values[k] == nil {
				values[k] = map[string][]float64{}
			}
			for _, unit := range []string{UnitTime, UnitBytes, UnitAllocs} {
				if v, ok := rec.Value(unit); ok {
					values[k][unit] = append(values[k][unit], v)
				}
			}
		}
	}
	if err := reader.Err(); err != nil {
		return nil, err
	}

	thresholds := benchmath.DefaultThresholds
	for k, byUnit := range values {
		if len(byUnit[UnitTime]) == 0 {
			data.Warnings = append(data.Warnings,
				fmt.Sprintf("%s %s: no sec/op values: skipped", k.workload, k.sys))
			continue
		}
		row := &Row{Workload: k.workload, System: k.sys, Conns: k.conns, Units: map[string]*Measure{}}
		for unit, vs := range byUnit {
			s := benchmath.NewSample(vs, &thresholds)
			row.Units[unit] = &Measure{Sample: s, Summary: benchmath.AssumeNothing.Summary(s, Confidence)}
		}
		data.Rows = append(data.Rows, row)
	}
	if len(data.Rows) == 0 {
		return nil, fmt.Errorf("%s: no benchmark results", name)
	}
	slices.SortFunc(data.Rows, compareRows)

	for _, row := range data.Rows {
		if !slices.Contains(Workloads, row.Workload) {
			data.Warnings = append(data.Warnings, fmt.Sprintf("unknown workload %q: shown last", row.Workload))
		}
		if !slices.Contains(Systems, row.System) {
			data.Warnings = append(data.Warnings, fmt.Sprintf("%s: unknown system %q: shown last", row.Workload, row.System))
		}
		if n := row.Time().N(); n < MinSamples {
			data.Warnings = append(data.Warnings, fewSamples(row, n))
		}
	}
	return data, nil
}

func fewSamples(row *Row, n int) string {
	return fmt.Sprintf("%s %s has %d samples, fewer than %d: its interval is unbounded (± ∞) and its comparisons are weak.",
		row.Workload, row.Label(), n, MinSamples)
}

func posString(r *benchfmt.Result) string {
	file, line := r.Pos()
	return file + ":" + strconv.Itoa(line)
}

// index returns the position of s in order, or len(order) when absent, so
// that unknown names sort last.
func index(order []string, s string) int {
	if i := slices.Index(order, s); i >= 0 {
		return i
	}
	return len(order)
}

func compareRows(a, b *Row) int {
	if c := index(Workloads, a.Workload) - index(Workloads, b.Workload); c != 0 {
		return c
	}
	if c := strings.Compare(a.Workload, b.Workload); c != 0 {
		return c
	}
	if c := index(Systems, a.System) - index(Systems, b.System); c != 0 {
		return c
	}
	if c := strings.Compare(a.System, b.System); c != 0 {
		return c
	}
	if c := index(connsOrder, a.Conns) - index(connsOrder, b.Conns); c != 0 {
		return c
	}
	return strings.Compare(a.Conns, b.Conns)
}

// RowsOf returns the rows of one workload, in page order.
func (d *Data) RowsOf(workload string) []*Row {
	var rows []*Row
	for _, r := range d.Rows {
		if r.Workload == workload {
			rows = append(rows, r)
		}
	}
	return rows
}

// WorkloadsPresent returns the workloads that have rows, in page order.
func (d *Data) WorkloadsPresent() []string {
	var ws []string
	for _, r := range d.Rows {
		if !slices.Contains(ws, r.Workload) {
			ws = append(ws, r.Workload)
		}
	}
	return ws
}

// SystemsPresent returns the systems that have rows, in page order.
func (d *Data) SystemsPresent() []string {
	var ss []string
	for _, r := range d.Rows {
		if !slices.Contains(ss, r.System) {
			ss = append(ss, r.System)
		}
	}
	slices.SortStableFunc(ss, func(a, b string) int { return index(Systems, a) - index(Systems, b) })
	return ss
}

// StageBefore returns the stage before sys ("01-http-add" for
// "02-json-tcp"), or "" when sys is stage 01, a peer or the floor.
func StageBefore(sys string) string {
	m := stageName.FindStringSubmatch(sys)
	if m == nil {
		return ""
	}
	if from, ok := builtFrom[sys]; ok {
		return from
	}
	n, _ := strconv.Atoi(m[1])
	prefix := fmt.Sprintf("%02d-", n-1)
	for _, s := range Systems {
		if strings.HasPrefix(s, prefix) {
			return s
		}
	}
	return ""
}

// Ratio sets one row against a row of another system in the same
// workload.
type Ratio struct {
	Against string // the other system; "" when the column does not apply
	Other   *Row   // nil when the other system has no row for this workload
	// Fallback is the other row's conns mode when it differs from this
	// row's (AddParallel, when the other system lacks this row's mode).
	Fallback string
	Cmp      benchmath.Comparison
	Value    float64 // this row's median sec/op over the other's
}

// Significant reports whether the U test says the two samples differ.
func (r Ratio) Significant() bool { return r.Other != nil && significant(r.Cmp) }

// significant is the one place that decides whether a difference is real:
// the Mann-Whitney U test (benchmath.AssumeNothing) at alpha 0.05, as
// benchstat decides it.
func significant(c benchmath.Comparison) bool {
	return c.P < c.Alpha
}

// Compare sets row against system's row of the same workload: the row with
// the same conns mode, else its shared row, else its first row. It returns a
// Ratio with Against "" when system is "" or row's own system.
func (d *Data) Compare(row *Row, system string) Ratio {
	if system == "" || system == row.System {
		return Ratio{}
	}
	r := Ratio{Against: system}
	var candidates []*Row
	for _, o := range d.Rows {
		if o.Workload == row.Workload && o.System == system {
			candidates = append(candidates, o)
		}
	}
	if len(candidates) == 0 {
		return r
	}
	pick := func(conns string) *Row {
		for _, c := range candidates {
			if c.Conns == conns {
				return c
			}
		}
		return nil
	}
	other := pick(row.Conns)
	if other == nil {
		other = pick("shared")
	}
	if other == nil {
		other = candidates[0]
	}
	r.Other = other
	if other.Conns != row.Conns {
		r.Fallback = other.Conns
	}
	r.Cmp = benchmath.AssumeNothing.Compare(row.Time().Sample, other.Time().Sample)
	r.Value = row.Time().Summary.Center / other.Time().Summary.Center
	return r
}

// Ratios returns the three ratio columns of a row: against the floor,
// against net/rpc and against the stage before.
func (d *Data) Ratios(row *Row) [3]Ratio {
	return [3]Ratio{
		d.Compare(row, floorSystem),
		d.Compare(row, netRPCSystem),
		d.Compare(row, StageBefore(row.System)),
	}
}
