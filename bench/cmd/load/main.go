// Command load runs each stage's server as a process under its client's
// load mode, and wrk against the HTTP servers, and writes the requests per
// second into the load section of the benchmarks page (make bench-load):
//
//	cd bench && go run ./cmd/load -page ../docs/benchmarks.md [-stages 01,02] [-calls 20000] [-concurrency 64] [-runs 3] [-wrk=false] [-wrk-duration 5s]
//
// It builds every stage's cmd/server and cmd/client once, into a
// temporary folder (or -bin). For each run of each stage it starts the
// server with -addr 127.0.0.1:0, reads its "listening on HOST:PORT" line,
// runs the client with -addr HOST:PORT -calls N -concurrency C, reads the
// client's summary line, and stops the server with SIGINT. A run whose
// client reports a failed or wrong call fails the command, and the page
// is left as it was. Where wrk is installed it runs wrk -t2 -c64 against
// stage 01's server, stage 06's, and stage 06's with -stdlib (net/http),
// each asking GET /add?a=1&b=2.
//
// The section replaces what lies between the lines <!-- bench-load:begin -->
// and <!-- bench-load:end --> of the page, which make bench-report writes;
// it is printed to stdout as well.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h printed the usage
		}
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// buildCommands is build; a test replaces it to run fake commands.
var buildCommands = build

// config is what the flags ask for.
type config struct {
	page        string
	stages      []stage
	calls       int
	concurrency int
	runs        int
	wrk         bool
	wrkDuration time.Duration
	bin         string
	args        []string // as given, for the section's command line
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	flags := flag.NewFlagSet("load", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cfg := config{args: args}
	flags.StringVar(&cfg.page, "page", "../docs/benchmarks.md", "the benchmarks page, `FILE`, whose load section to replace (make bench-report writes it)")
	only := flags.String("stages", "01,02,03,04,05,06", "the stages to load, a comma-separated `LIST` of numbers")
	flags.IntVar(&cfg.calls, "calls", 20000, "each client's -calls: how many add calls a run makes")
	flags.IntVar(&cfg.concurrency, "concurrency", 64, "each client's -concurrency: how many callers at once")
	flags.IntVar(&cfg.runs, "runs", 3, "how many times to run each client, and wrk against each server, each time with a new server")
	flags.BoolVar(&cfg.wrk, "wrk", true, "run wrk against stage 01, stage 06, and stage 06 with -stdlib, if wrk is installed")
	flags.DurationVar(&cfg.wrkDuration, "wrk-duration", 5*time.Second, "each wrk run's -d")
	flags.StringVar(&cfg.bin, "bin", "", "build the stages' commands into `DIR` and keep them there; empty uses a temporary folder")
	if err := flags.Parse(args); err != nil {
		return cfg, err
	}
	if flags.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if cfg.calls < 1 || cfg.concurrency < 1 || cfg.runs < 1 {
		return cfg, fmt.Errorf("-calls, -concurrency and -runs must be at least 1, not %d, %d and %d", cfg.calls, cfg.concurrency, cfg.runs)
	}
	if cfg.wrkDuration < time.Second {
		return cfg, fmt.Errorf("-wrk-duration must be at least 1s (wrk counts in seconds), not %v", cfg.wrkDuration)
	}
	for _, num := range strings.Split(*only, ",") {
		i := slices.IndexFunc(stages, func(s stage) bool { return s.num == strings.TrimSpace(num) })
		if i < 0 {
			return cfg, fmt.Errorf("-stages: no stage %q (the stages are 01 to 06)", num)
		}
		if !slices.ContainsFunc(cfg.stages, func(s stage) bool { return s.num == stages[i].num }) {
			cfg.stages = append(cfg.stages, stages[i])
		}
	}
	return cfg, nil
}

// stageResult is every run of one stage's client.
type stageResult struct {
	stage stage
	runs  []clientRun
}

// wrkResult is every wrk run against one server.
type wrkResult struct {
	target wrkTarget
	runs   []wrkRun
}

// report is what the section shows.
type report struct {
	cfg                   config
	goVersion, cpu        string
	cores                 int
	loadBefore, loadAfter string // /proc/loadavg's three figures
	date                  string
	stages                []stageResult
	wrk                   []wrkResult
	wrkMissing            bool // -wrk, but wrk is not on PATH
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// Check the page before minutes of load, not after.
	page, err := os.ReadFile(cfg.page)
	if err != nil {
		return fmt.Errorf("%w: run make bench-report first, it writes the page", err)
	}
	if _, err := replaceSection(page, ""); err != nil {
		return fmt.Errorf("%s: %w: run make bench-report first, it writes the page with the markers %s and %s", cfg.page, err, beginMarker, endMarker)
	}

	rep := report{cfg: cfg, cores: runtime.NumCPU(), cpu: cpuModel()}
	rep.goVersion, err = goVersion(ctx)
	if err != nil {
		return err
	}
	wrkPath := ""
	if cfg.wrk {
		wrkPath, err = findWrk()
		if err != nil {
			rep.wrkMissing = true
			fmt.Fprintln(stderr, "load: wrk is not installed, so there are no wrk figures (on Debian: apt-get install wrk)")
		}
	}

	bin := cfg.bin
	if bin == "" {
		bin, err = os.MkdirTemp("", "bench-load-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(bin)
	} else if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	builds := map[string][]string{}
	for _, s := range cfg.stages {
		builds[s.name] = []string{"server", "client"}
	}
	if wrkPath != "" {
		for _, t := range wrkTargets {
			if !slices.Contains(builds[t.stage], "server") {
				builds[t.stage] = append(builds[t.stage], "server")
			}
		}
	}
	fmt.Fprintf(stderr, "load: building %d stages' commands into %s\n", len(builds), bin)
	if err := buildCommands(ctx, bin, builds); err != nil {
		return err
	}

	rep.loadBefore = loadAverage()
	for _, s := range cfg.stages {
		res := stageResult{stage: s}
		for i := range cfg.runs {
			r, err := runClient(ctx, bin, s, cfg)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", s.name, i+1, err)
			}
			fmt.Fprintf(stderr, "load: %s run %d: %.0f calls/s\n", s.name, i+1, r.RPS)
			res.runs = append(res.runs, r)
		}
		rep.stages = append(rep.stages, res)
	}
	if wrkPath != "" {
		for _, t := range wrkTargets {
			res := wrkResult{target: t}
			for i := range cfg.runs {
				r, err := runWrk(ctx, bin, wrkPath, t, cfg.wrkDuration)
				if err != nil {
					return fmt.Errorf("wrk against %s, run %d: %w", t.label(), i+1, err)
				}
				fmt.Fprintf(stderr, "load: wrk against %s run %d: %.0f requests/s\n", t.label(), i+1, r.RPS)
				res.runs = append(res.runs, r)
			}
			rep.wrk = append(rep.wrk, res)
		}
	}
	rep.loadAfter = loadAverage()
	rep.date = time.Now().UTC().Format("2006-01-02 15:04 MST")

	section := renderSection(rep)
	if err := updatePage(cfg.page, section); err != nil {
		return err
	}
	fmt.Fprint(stdout, section)
	fmt.Fprintf(stderr, "load: wrote the load section of %s\n", cfg.page)
	return nil
}

// runClient runs one run of a stage: a new server, the client's load
// mode against it, and the server stopped.
func runClient(ctx context.Context, bin string, s stage, cfg config) (r clientRun, err error) {
	srv, err := startServer(ctx, s.name, binary(bin, s.name, "server"))
	if err != nil {
		return r, err
	}
	defer func() {
		if stopErr := srv.stop(); err == nil {
			err = stopErr
		}
	}()
	out, err := runCommand(ctx, binary(bin, s.name, "client"),
		"-addr", srv.addr, "-calls", strconv.Itoa(cfg.calls), "-concurrency", strconv.Itoa(cfg.concurrency))
	if err != nil {
		return r, err
	}
	r, err = parseClientOutput(out)
	if err != nil {
		return r, fmt.Errorf("%w; the client's output:\n%s", err, out)
	}
	return r, nil
}

// wrkArgs are the arguments of one wrk run against addr.
func wrkArgs(addr string, d time.Duration) []string {
	return []string{"-t2", "-c64", "-d" + strconv.Itoa(int(d.Seconds())) + "s", "http://" + addr + wrkPath}
}

// runWrk runs wrk once against a new server of t.
func runWrk(ctx context.Context, bin, wrk string, t wrkTarget, d time.Duration) (r wrkRun, err error) {
	srv, err := startServer(ctx, t.stage, binary(bin, t.stage, "server"), t.flags...)
	if err != nil {
		return r, err
	}
	defer func() {
		if stopErr := srv.stop(); err == nil {
			err = stopErr
		}
	}()
	out, err := runCommand(ctx, wrk, wrkArgs(srv.addr, d)...)
	if err != nil {
		return r, err
	}
	r, err = parseWrkOutput(out)
	if err != nil {
		return r, fmt.Errorf("%w; wrk's output:\n%s", err, out)
	}
	return r, nil
}

// goVersion is the version of the go command that builds the stages.
func goVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOOS", "GOARCH").Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w (is the go command on PATH?)", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 {
		return "", fmt.Errorf("go env GOVERSION GOOS GOARCH printed %q", out)
	}
	return f[0] + " " + f[1] + "/" + f[2], nil
}

// loadAverage is the first three fields of /proc/loadavg, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
