// Command report writes docs/benchmarks.md and docs/img/benchmarks.svg
// from the raw output of the benchmarks in bench/. make bench-report runs
// it after the benchmarks; see bench/internal/report for what it draws.
//
//	go run ./cmd/report -raw results/raw.txt -page ../docs/benchmarks.md \
//	    -svg ../docs/img/benchmarks.svg -command "..." -go "$(go version)" \
//	    -machine "$(uname -srm)" -cores "$(nproc)" -date "$(date -u +%F)" \
//	    -load-before "..." -load-after "..."
//
// Each of -command, -go, -machine, -date, -load-before and -load-after
// not given on the command line is taken from a line "run-NAME: value" of
// the raw file (run-command, run-go, …), which make bench-report writes
// around the benchmarks' output. So the page can be written again from the
// committed raw file alone: make bench-page.
//
// It keeps what lies between the load markers of the existing page.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rpc-from-scratch/course/bench/internal/report"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	raw := fs.String("raw", "results/raw.txt", "raw benchmark output to read")
	page := fs.String("page", "../docs/benchmarks.md", "page to write")
	svg := fs.String("svg", "../docs/img/benchmarks.svg", "chart to write")
	var m report.Meta
	fs.StringVar(&m.Command, "command", "", "the exact benchmark command, shown on the page")
	fs.StringVar(&m.GoVersion, "go", "", "output of `go version`")
	fs.StringVar(&m.Machine, "machine", "", "output of `uname -srm`")
	fs.StringVar(&m.Cores, "cores", "", "output of `nproc`")
	fs.StringVar(&m.Date, "date", "", "date of the run (default: the raw file's run-date, else today)")
	fs.StringVar(&m.LoadBefore, "load-before", "", "/proc/loadavg before the run")
	fs.StringVar(&m.LoadAfter, "load-after", "", "/proc/loadavg after the run")
	fs.StringVar(&m.RawPath, "raw-name", "bench/results/raw.txt", "the raw file's path from the repository's root, shown on the page")
	fs.StringVar(&m.SVGLink, "svg-link", "img/benchmarks.svg", "the chart's path relative to the page")
	fs.StringVar(&m.Generator, "generator", "make bench-report", "the command that writes the page, shown in its first line")
	if err := fs.Parse(args); err != nil {
		return err
	}

	rawBytes, err := os.ReadFile(*raw)
	if err != nil {
		return err
	}
	data, err := report.Parse(bytes.NewReader(rawBytes), *raw)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	runLines := runMeta(rawBytes)
	for name, field := range map[string]*string{
		"command": &m.Command, "go": &m.GoVersion, "machine": &m.Machine, "date": &m.Date,
		"load-before": &m.LoadBefore, "load-after": &m.LoadAfter,
	} {
		if v, ok := runLines[name]; ok && !set[name] {
			*field = v
		}
	}
	if m.Date == "" {
		m.Date = time.Now().UTC().Format("2006-01-02")
	}
	for _, w := range data.Warnings {
		fmt.Fprintln(os.Stderr, "report: warning:", w)
	}

	var load []byte
	old, err := os.ReadFile(*page)
	switch {
	case err == nil:
		var ok bool
		if load, ok = report.LoadSection(old); !ok {
			fmt.Fprintf(os.Stderr, "report: warning: %s has no load markers: writing the placeholder\n", *page)
		}
	case !os.IsNotExist(err):
		return err
	}

	var pageBuf, svgBuf bytes.Buffer
	if err := report.WritePage(&pageBuf, data, m, load); err != nil {
		return err
	}
	if err := report.WriteSVG(&svgBuf, data); err != nil {
		return err
	}
	if err := writeAtomic(*svg, svgBuf.Bytes()); err != nil {
		return err
	}
	return writeAtomic(*page, pageBuf.Bytes())
}

// runMeta returns the values of the raw file's "run-NAME: value" lines, by
// NAME. benchfmt reads them as configuration lines, which the report ignores.
func runMeta(raw []byte) map[string]string {
	meta := map[string]string{}
	for line := range strings.Lines(string(raw)) {
		key, value, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ": ")
		if name, isRun := strings.CutPrefix(key, "run-"); ok && isRun && !strings.ContainsAny(name, " \t") {
			meta[name] = strings.TrimSpace(value)
		}
	}
	return meta
}

// writeAtomic writes a file through a temporary file and a rename, so a
// reader never sees half a page.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
