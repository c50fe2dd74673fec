package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writePage writes testPage into a new folder and returns its path.
func writePage(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	require.NoError(t, os.WriteFile(path, []byte(testPage), 0o644))
	return path
}

// fakeBuilds makes run link the test binary under each command's name
// instead of building it, and returns what run asked to build.
func fakeBuilds(t *testing.T) *map[string][]string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	asked := new(map[string][]string)
	old := buildCommands
	buildCommands = func(_ context.Context, dir string, builds map[string][]string) error {
		*asked = builds
		for name, cmds := range builds {
			for _, cmd := range cmds {
				if err := os.Symlink(self, binary(dir, name, cmd)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	t.Cleanup(func() { buildCommands = old })
	return asked
}

// pathWith sets PATH to the go command's folder and, if wrkDir is not
// empty, the folder of a fake wrk before it.
func pathWith(t *testing.T, wrkDir string) {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	require.NoError(t, err)
	path := filepath.Dir(gocmd)
	if wrkDir != "" {
		path = wrkDir + string(os.PathListSeparator) + path
	}
	t.Setenv("PATH", path)
}

func TestRunWritesTheSection(t *testing.T) {
	asked := fakeBuilds(t)
	pathWith(t, fakeBin(t, "wrk"))
	t.Setenv(fakeServerEnv, "listen")
	t.Setenv(fakeClientEnv, "ok")
	t.Setenv(fakeWrkEnv, "ok")
	log := filepath.Join(t.TempDir(), "commands.log")
	t.Setenv(fakeLogEnv, log)
	page := writePage(t)

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-page", page, "-stages", "02,05", "-runs", "2", "-calls", "300", "-wrk-duration", "2s"}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())

	commands, err := os.ReadFile(log)
	require.NoError(t, err)
	const (
		client = " -addr 127.0.0.1:9 -calls 300 -concurrency 64\n"
		wrk    = "wrk -t2 -c64 -d2s http://127.0.0.1:9/add?a=1&b=2\n"
	)
	assert.Equal(t, ""+
		"02-json-tcp-server -addr 127.0.0.1:0\n02-json-tcp-client"+client+
		"02-json-tcp-server -addr 127.0.0.1:0\n02-json-tcp-client"+client+
		"05-async-callback-server -addr 127.0.0.1:0\n05-async-callback-client"+client+
		"05-async-callback-server -addr 127.0.0.1:0\n05-async-callback-client"+client+
		"01-http-add-server -addr 127.0.0.1:0\n"+wrk+
		"01-http-add-server -addr 127.0.0.1:0\n"+wrk+
		"06-wsgi-router-server -addr 127.0.0.1:0\n"+wrk+
		"06-wsgi-router-server -addr 127.0.0.1:0\n"+wrk+
		"06-wsgi-router-server -addr 127.0.0.1:0 -stdlib\n"+wrk+
		"06-wsgi-router-server -addr 127.0.0.1:0 -stdlib\n"+wrk,
		string(commands), "each run a new server, then its client or wrk")

	assert.Equal(t, map[string][]string{
		"01-http-add":       {"server"},
		"02-json-tcp":       {"server", "client"},
		"05-async-callback": {"server", "client"},
		"06-wsgi-router":    {"server"},
	}, *asked, "the stages asked for, and the servers wrk loads")
	got, err := os.ReadFile(page)
	require.NoError(t, err)
	assert.Equal(t, pageHead+stdout.String()+pageTail, string(got), "the section printed is the one written, between the markers")
	for _, want := range []string{
		"| 02-json-tcp | " + stages[1].sharing + " | 10,603 · 10,603 | 10,603 | 4.15ms, 35.1ms |",
		"| 05-async-callback | ",
		"| `01-http-add`: " + wrkTargets[0].what + " | 33,443 · 33,443 | 33,443 | 1.79ms |",
		"| `06-wsgi-router`: ",
		"| `06-wsgi-router -stdlib`: ",
		"cd bench && go run ./cmd/load -page " + page + " -stages 02,05 -runs 2 -calls 300 -wrk-duration 2s",
	} {
		assert.Contains(t, stdout.String(), want)
	}
	assert.NotContains(t, stdout.String(), "| 01-http-add |", "stage 01 was not asked for")
}

func TestRunFailsAndLeavesThePage(t *testing.T) {
	for _, tc := range []struct {
		name, client, wrk string
		want              []string
	}{
		{"a client's calls fail", "errors", "ok", []string{"02-json-tcp, run 1", "calls=200 ok=0 errors=200"}},
		{"a client prints no summary", "no-line", "ok", []string{"02-json-tcp, run 1", `no "calls=`}},
		{"wrk counts 404s", "ok", "non2xx", []string{"wrk against 01-http-add, run 1", "Non-2xx or 3xx responses: 40720"}},
		{"wrk counts socket errors", "ok", "socket-errors", []string{"wrk against 01-http-add, run 1", "Socket errors"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeBuilds(t)
			pathWith(t, fakeBin(t, "wrk"))
			t.Setenv(fakeServerEnv, "listen")
			t.Setenv(fakeClientEnv, tc.client)
			t.Setenv(fakeWrkEnv, tc.wrk)
			page := writePage(t)

			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"-page", page, "-stages", "02", "-runs", "1"}, &stdout, &stderr)
			require.Error(t, err)
			for _, want := range tc.want {
				assert.Contains(t, err.Error(), want)
			}
			got, err := os.ReadFile(page)
			require.NoError(t, err)
			assert.Equal(t, testPage, string(got), "a failed run leaves the page as it was")
			assert.Empty(t, stdout.String())
		})
	}
}

func TestRunWithoutWrk(t *testing.T) {
	asked := fakeBuilds(t)
	pathWith(t, "")
	t.Setenv(fakeServerEnv, "listen")
	t.Setenv(fakeClientEnv, "ok")
	page := writePage(t)

	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-page", page, "-stages", "03", "-runs", "1"}, &stdout, &stderr))
	assert.Equal(t, map[string][]string{"03-custom-protocol": {"server", "client"}}, *asked)
	assert.Contains(t, stdout.String(), "wrk is not installed on the machine of this run, so it has no wrk figures: on Debian `apt-get install wrk`.")
	assert.Contains(t, stderr.String(), "wrk is not installed")
	assert.Contains(t, stdout.String(), "| 03-custom-protocol | ")
}

func TestRunChecksThePageFirst(t *testing.T) {
	old := buildCommands
	buildCommands = func(context.Context, string, map[string][]string) error {
		t.Error("run built the commands before it checked the page")
		return nil
	}
	t.Cleanup(func() { buildCommands = old })
	dir := t.TempDir()

	err := run(context.Background(), []string{"-page", filepath.Join(dir, "missing.md")}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run make bench-report first")

	noMarkers := filepath.Join(dir, "benchmarks.md")
	require.NoError(t, os.WriteFile(noMarkers, []byte("# Benchmarks\n"), 0o644))
	err = run(context.Background(), []string{"-page", noMarkers}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run make bench-report first")
	assert.Contains(t, err.Error(), "no line "+beginMarker)
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-stages", "07"}, {"-calls", "0"}, {"-runs", "0"}, {"-wrk-duration", "500ms"}, {"extra"},
	} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		assert.Error(t, err, strings.Join(args, " "))
	}
}

// The whole thing, for real, on one stage with tiny numbers: go build,
// stage 02's server as a process, its client's load mode, SIGINT.
func TestRunOneStageForReal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds stage 02's server and client: skipped with -short")
	}
	page := writePage(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-page", page, "-stages", "02", "-calls", "200", "-runs", "1", "-wrk=false", "-bin", t.TempDir()}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())

	got, err := os.ReadFile(page)
	require.NoError(t, err)
	assert.Equal(t, pageHead+stdout.String()+pageTail, string(got))
	assert.Contains(t, stdout.String(), "| 02-json-tcp | "+stages[1].sharing+" | ")
	assert.Contains(t, stdout.String(), "`-calls 200 -concurrency 64`, 1 run,")
	assert.Contains(t, stdout.String(), "This run was made with `-wrk=false`")
	assert.Contains(t, stderr.String(), "load: 02-json-tcp run 1: ")
}
