package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rpc-from-scratch/course/bench/internal/report"
)

const fixture = "../../internal/report/testdata/raw.txt"

func args(dir string, extra ...string) []string {
	return append([]string{
		"-raw", fixture,
		"-page", filepath.Join(dir, "docs", "benchmarks.md"),
		"-svg", filepath.Join(dir, "docs", "img", "benchmarks.svg"),
		"-command", "go test -bench . -count 6",
		"-go", "go version go1.26.8 linux/amd64",
		"-machine", "Linux x86_64",
		"-cores", "2",
		"-date", "2026-11-25",
		"-load-before", "0.10 0.20 0.30 1/2 3",
		"-load-after", "1.10 1.20 1.30 1/2 3",
	}, extra...)
}

func TestRunWritesPageAndChart(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, run(args(dir)))

	pg, err := os.ReadFile(filepath.Join(dir, "docs", "benchmarks.md"))
	require.NoError(t, err)
	assert.Contains(t, string(pg), report.LoadBegin+"\n"+report.LoadPlaceholder+report.LoadEnd)
	assert.Contains(t, string(pg), "`go test -bench . -count 6`")
	assert.Contains(t, string(pg), "0.10 0.20 0.30 before, 1.10 1.20 1.30 after")
	svg, err := os.ReadFile(filepath.Join(dir, "docs", "img", "benchmarks.svg"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(svg), "<svg "))

	// A second run keeps what make bench-load wrote between the markers.
	load := "## Requests per second\n\n| stage | req/s |\n|---|---|\n| 02 | 41000 |\n"
	edited := strings.Replace(string(pg), report.LoadPlaceholder, load, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docs", "benchmarks.md"), []byte(edited), 0o644))
	require.NoError(t, run(args(dir)))
	pg2, err := os.ReadFile(filepath.Join(dir, "docs", "benchmarks.md"))
	require.NoError(t, err)
	assert.Equal(t, edited, string(pg2))

	entries, err := os.ReadDir(filepath.Join(dir, "docs"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), "."), "temporary file left: %s", e.Name())
	}
}

func TestRunFailsOnMissingRaw(t *testing.T) {
	dir := t.TempDir()
	a := args(dir)
	a[1] = filepath.Join(dir, "missing.txt")
	assert.Error(t, run(a))
	_, err := os.Stat(filepath.Join(dir, "docs", "benchmarks.md"))
	assert.True(t, os.IsNotExist(err), "no page written")
}

// TestRunTakesMetadataFromRaw writes the page from a raw file that carries
// the run's metadata as run-NAME lines, as make bench-report writes it,
// with no metadata flags: make bench-page. A flag given still wins.
func TestRunTakesMetadataFromRaw(t *testing.T) {
	dir := t.TempDir()
	fix, err := os.ReadFile(fixture)
	require.NoError(t, err)
	raw := "run-command: cd bench && go test -bench . -count 6\n" +
		"run-go: go version go1.26.8 linux/amd64\n" +
		"run-machine: Linux 6.18 x86_64, 2 cores\n" +
		"run-date: 2026-11-24\n" +
		"run-load-before: 0.11 0.22 0.33\n" +
		string(fix) +
		"run-load-after: 1.11 1.22 1.33\n"
	rawPath := filepath.Join(dir, "raw.txt")
	require.NoError(t, os.WriteFile(rawPath, []byte(raw), 0o644))
	pagePath := filepath.Join(dir, "benchmarks.md")
	base := []string{"-raw", rawPath, "-page", pagePath, "-svg", filepath.Join(dir, "benchmarks.svg")}

	require.NoError(t, run(base))
	pg, err := os.ReadFile(pagePath)
	require.NoError(t, err)
	for _, want := range []string{
		"`cd bench && go test -bench . -count 6`",
		"go version go1.26.8 linux/amd64",
		"Linux 6.18 x86_64, 2 cores",
		"2026-11-24",
		"0.11 0.22 0.33 before, 1.11 1.22 1.33 after",
	} {
		assert.Contains(t, string(pg), want)
	}

	require.NoError(t, run(append(base, "-date", "2026-12-01")))
	pg, err = os.ReadFile(pagePath)
	require.NoError(t, err)
	assert.Contains(t, string(pg), "2026-12-01")
	assert.NotContains(t, string(pg), "2026-11-24")
}
