// Command report writes docs/benchmarks.md and docs/img/benchmarks.svg
// from the raw output of the benchmarks in bench/. make bench-report runs
// it after the benchmarks; see bench/internal/report for what it draws.
//
//	go run ./cmd/report -raw results/raw.txt -page ../docs/benchmarks.md \
//	    -svg ../docs/img/benchmarks.svg -command "..." -go "$(go version)" \
//	    -machine "$(uname -srm)" -cores "$(nproc)" -date "$(date -u +%F)" \
//	    -load-before "..." -load-after "..."
//
// It keeps what lies between the load markers of the existing page.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
	fs.StringVar(&m.Date, "date", time.Now().UTC().Format("2006-01-02"), "date of the run")
	fs.StringVar(&m.LoadBefore, "load-before", "", "/proc/loadavg before the run")
	fs.StringVar(&m.LoadAfter, "load-after", "", "/proc/loadavg after the run")
	fs.StringVar(&m.RawPath, "raw-name", "bench/results/raw.txt", "the raw file's path from the repository's root, shown on the page")
	fs.StringVar(&m.SVGLink, "svg-link", "img/benchmarks.svg", "the chart's path relative to the page")
	fs.StringVar(&m.Generator, "generator", "make bench-report", "the command that writes the page, shown in its first line")
	if err := fs.Parse(args); err != nil {
		return err
	}

	f, err := os.Open(*raw)
	if err != nil {
		return err
	}
	data, err := report.Parse(f, *raw)
	f.Close()
	if err != nil {
		return err
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
