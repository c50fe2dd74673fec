package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestMedian(t *testing.T) {
	assert.Equal(t, 2.0, median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
	assert.Equal(t, 7.0, median([]float64{7}))
	xs := []float64{3, 1, 2}
	median(xs)
	assert.Equal(t, []float64{3, 1, 2}, xs, "median leaves its argument alone")

	assert.Equal(t, 2, medianIndex([]float64{3, 1, 2}), "the run with the median value")
	assert.Equal(t, 3, medianIndex([]float64{4, 1, 3, 2}), "the lower of the two middle runs")
	assert.Equal(t, 0, medianIndex([]float64{7}))
}

func TestFormats(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 999: "999", 999.6: "1,000", 1000: "1,000", 104051: "104,051", 1234567: "1,234,567"} {
		assert.Equal(t, want, rate(x), "%v", x)
	}
	for d, want := range map[time.Duration]string{
		500: "500ns", 457 * time.Microsecond: "457µs", 4516 * time.Microsecond: "4.52ms",
		35148 * time.Microsecond: "35.1ms", 1200 * time.Millisecond: "1.20s", 0: "0ns",
	} {
		assert.Equal(t, want, humanDuration(d), "%v", d)
	}
	assert.Equal(t, "cd bench && go run ./cmd/load -page ../docs/benchmarks.md", commandLine([]string{"-page", "../docs/benchmarks.md"}))
	assert.Equal(t, `cd bench && go run ./cmd/load -page 'my page.md' -stages 02`, commandLine([]string{"-page", "my page.md", "-stages", "02"}))
	assert.Equal(t, "cd bench && go run ./cmd/load", commandLine(nil))
}

func TestSectionShowsEveryRunAndTheMedian(t *testing.T) {
	rep := report{
		cfg:       config{calls: 20000, concurrency: 64, runs: 3, wrk: true, wrkDuration: 5 * time.Second, args: []string{"-page", "../docs/benchmarks.md"}},
		goVersion: "go1.26.8 linux/amd64", cpu: "AMD EPYC", cores: 2,
		loadBefore: "0.92 1.68 2.01", loadAfter: "1.10 1.70 2.00", date: "2026-11-25 21:40 UTC",
		stages: []stageResult{{stage: stages[4], runs: []clientRun{
			{RPS: 30000, P50: time.Millisecond, P99: 9 * time.Millisecond},
			{RPS: 10000, P50: 3 * time.Millisecond, P99: 20 * time.Millisecond},
			{RPS: 20000, P50: 2 * time.Millisecond, P99: 15 * time.Millisecond},
		}}},
		wrk: []wrkResult{{target: wrkTargets[2], runs: []wrkRun{
			{RPS: 41000.5, LatencyAvg: 1500 * time.Microsecond},
			{RPS: 40000, LatencyAvg: 1600 * time.Microsecond},
			{RPS: 39000, LatencyAvg: 1700 * time.Microsecond},
		}}},
	}
	got := renderSection(rep)
	for _, want := range []string{
		"```sh\ncd bench && go run ./cmd/load -page ../docs/benchmarks.md\n```",
		"share this machine's 2 cores",
		"whole-program figures, not benchmarks",
		"process start is not counted",
		"- Go: go1.26.8 linux/amd64; CPU: AMD EPYC, 2 cores",
		"before: 0.92 1.68 2.01; after: 1.10 1.70 2.00 (the figures after count this run's own work)",
		"`-calls 20000 -concurrency 64`, 3 runs",
		"| 05-async-callback | " + stages[4].sharing + " | 30,000 · 10,000 · 20,000 | 20,000 | 2.00ms, 15.0ms |",
		"`wrk -t2 -c64 -d5s http://HOST:PORT/add?a=1&b=2`",
		"| `06-wsgi-router -stdlib`: " + wrkTargets[2].what + " | 41,001 · 40,000 · 39,000 | 40,000 | 1.60ms |",
	} {
		assert.Contains(t, got, want)
	}
	assert.True(t, strings.HasSuffix(got, "\n"))

	rep.wrk, rep.wrkMissing = nil, true
	assert.Contains(t, renderSection(rep), "wrk is not installed on the machine of this run, so it has no wrk figures: on Debian `apt-get install wrk`.")
	rep.cfg.wrk, rep.wrkMissing = false, false
	assert.Contains(t, renderSection(rep), "This run was made with `-wrk=false`: it has no wrk figures.")
}
