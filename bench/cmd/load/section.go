package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// renderSection writes the page's load section: what was run, on what,
// and a table of each run's figures.
func renderSection(rep report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cfg := rep.cfg

	// The heading above the markers is the page's (bench/internal/report).
	p("The tables above time calls inside one test binary. Here each stage runs as a learner runs it: ")
	p("its server as one process (`cmd/server -addr 127.0.0.1:0`), its client's load mode as another ")
	p("(`cmd/client -addr HOST:PORT -calls N -concurrency C`), over loopback. ")
	p("These are whole-program figures, not benchmarks. Each run starts a new server; process start is not counted ")
	p("(the client times from its first call to its last), but client and server share this machine's %d cores, ", rep.cores)
	p("so each one's work slows the other. Every run is shown, and the median of the runs.\n\n")

	p("```sh\n%s\n```\n\n", commandLine(cfg.args))
	p("`make bench-load` runs this command (with `LOADFLAGS`); it replaces only this section of the page.\n\n")
	p("- Date: %s\n", rep.date)
	cpu := ""
	if rep.cpu != "" {
		cpu = rep.cpu + ", "
	}
	p("- Go: %s; CPU: %s%d cores\n", rep.goVersion, cpu, rep.cores)
	p("- Load average (1, 5, 15 minutes) before: %s; after: %s (the figures after count this run's own work)\n\n", rep.loadBefore, rep.loadAfter)

	p("### Load mode: calls per second\n\n")
	p("Each client runs with `-calls %d -concurrency %d`, %s, each against a new server. ", cfg.calls, cfg.concurrency, plural(cfg.runs, "run"))
	p("A run counts only if every call came back with the right sum. ")
	p("The second column says how each client's load mode shares connections among its callers, from its `cmd/client/main.go`.\n\n")
	p("| stage | how the callers share connections | calls/s, each run | median calls/s | p50, p99 latency of the median run |\n")
	p("|---|---|--:|--:|--:|\n")
	for _, s := range rep.stages {
		rps, mid := ratesAndMedian(s.runs, func(r clientRun) float64 { return r.RPS })
		p("| %s | %s | %s | %s | %s, %s |\n", s.stage.name, s.stage.sharing, joinRates(rps), rate(median(rps)),
			humanDuration(mid.P50), humanDuration(mid.P99))
	}
	p("\n")

	p("### wrk: requests per second\n\n")
	switch {
	case !cfg.wrk:
		p("This run was made with `-wrk=false`: it has no wrk figures.\n")
	case rep.wrkMissing:
		p("wrk is not installed on the machine of this run, so it has no wrk figures: on Debian `apt-get install wrk`.\n")
	default:
		p("`wrk %s` against each server, %s, each against a new server. ", strings.Join(wrkArgs("HOST:PORT", cfg.wrkDuration), " "), plural(cfg.runs, "run"))
		p("Stage 01's server is net/http's with the stage's own handler; stage 06's `-stdlib` serves the same application as stage 06 behind net/http's server, the peer of stage 06's own. ")
		p("wrk keeps its 64 connections alive. A run with an answer that is not 2xx or 3xx, or with a socket error, fails.\n\n")
		p("| server | requests/s, each run | median requests/s | mean latency of the median run |\n")
		p("|---|--:|--:|--:|\n")
		for _, w := range rep.wrk {
			rps, mid := ratesAndMedian(w.runs, func(r wrkRun) float64 { return r.RPS })
			name := "`" + w.target.label() + "`"
			p("| %s: %s | %s | %s | %s |\n", name, w.target.what, joinRates(rps), rate(median(rps)), humanDuration(mid.LatencyAvg))
		}
	}
	return b.String()
}

// ratesAndMedian returns the rate of each run, and the run whose rate is
// the median: the run whose latencies the tables show.
func ratesAndMedian[R any](runs []R, rate func(R) float64) ([]float64, R) {
	rps := make([]float64, len(runs))
	for i, r := range runs {
		rps[i] = rate(r)
	}
	return rps, runs[medianIndex(rps)]
}

// commandLine is the command as typed from the repository's root.
func commandLine(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`&|;<>()*?[]#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		quoted[i] = a
	}
	return strings.TrimSpace("cd bench && go run ./cmd/load " + strings.Join(quoted, " "))
}

// median of xs, which is not empty: the middle value, or the mean of the
// two middle values.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianIndex is the index in xs of its median value, or of the lower of
// the two middle values.
func medianIndex(xs []float64) int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case xs[a] < xs[b]:
			return -1
		case xs[a] > xs[b]:
			return 1
		}
		return 0
	})
	return idx[(len(idx)-1)/2]
}

func joinRates(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = rate(x)
	}
	return strings.Join(s, " · ")
}

// rate is x rounded to a whole number, with thousands separated: 104,051.
func rate(x float64) string {
	digits := strconv.FormatInt(int64(x+0.5), 10)
	var b strings.Builder
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}

// humanDuration is d with three significant digits: 457µs, 4.52ms, 1.20s.
func humanDuration(d time.Duration) string {
	units := []struct {
		name string
		size time.Duration
	}{{"s", time.Second}, {"ms", time.Millisecond}, {"µs", time.Microsecond}, {"ns", 1}}
	for _, u := range units {
		if d >= u.size || u.size == 1 {
			v := float64(d) / float64(u.size)
			prec := 2
			switch {
			case v >= 100:
				prec = 0
			case v >= 10:
				prec = 1
			}
			if u.size == 1 {
				prec = 0
			}
			return strconv.FormatFloat(v, 'f', prec, 64) + u.name
		}
	}
	return d.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
