package rpctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BrowserEnv is the environment variable that decides what a browser test
// does when Chromium is missing: by default it skips with a message; set to
// "required" (as .ci/run does) it fails instead.
const BrowserEnv = "RPC_BROWSER"

// ScreenshotWidth and ScreenshotHeight are the size, in pixels, of the
// window Screenshot renders the page in, and so of the PNG it writes.
const (
	ScreenshotWidth  = 900
	ScreenshotHeight = 600
)

// virtualTimeBudget is how much virtual time, in milliseconds, a page may
// spend on its timers before Chromium takes the DOM or the screenshot.
// Virtual time runs ahead at once when the page is idle, and stands still
// while a request is in flight, so this costs no wall-clock time and a slow
// server cannot make the page be read too early.
const virtualTimeBudget = 10_000

// Chromium returns the path of a Chromium or Chrome on PATH, or skips the
// test with a clear message. When RPC_BROWSER=required the test fails
// instead of skipping, so that CI never passes on a skipped browser test.
func Chromium(t testing.TB) string {
	t.Helper()
	// Debian calls it chromium; Ubuntu and some other distributions
	// chromium-browser; Google's own build is google-chrome.
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv(BrowserEnv) == "required" {
		t.Fatalf("chromium is not on PATH, and %s=required", BrowserEnv)
	}
	t.Skipf("browser test skipped: chromium is not on PATH (install Debian's chromium package; set %s=required to make this a failure)", BrowserEnv)
	return ""
}

// RenderDOM may be called from parallel tests: each call starts a Chromium
// of its own, with an empty profile, which takes two to three seconds.
//
// RenderDOM loads url in a headless Chromium, lets the page's scripts run,
// and returns the DOM as Chromium serialises it then: what a person would
// see with the browser's inspector, not the HTML the server sent.
//
// Its limits: it waits while a request is in flight and while timers fall
// due within ten seconds of virtual time, then reads the DOM. A page that
// polls forever is read when that budget is spent; a request that never
// completes holds it until the Backstop kills Chromium. It fails the test if
// Chromium fails, outlives the Backstop, or prints nothing (which is what it
// does when the page cannot be loaded: Chromium still exits with status 0).
// What Chromium printed on standard error, including the page's console
// messages and uncaught errors, is logged if the test fails.
func RenderDOM(t testing.TB, chromium, url string) string {
	t.Helper()
	dom := runChromium(t, chromium,
		// Print the DOM on standard output once the page has loaded and its
		// virtual time budget is spent.
		"--dump-dom",
		url)
	require.NotEmpty(t, dom, "chromium printed no DOM for %s: the page did not load", url)
	return dom
}

// Screenshot may be called from parallel tests, as RenderDOM may.
//
// Screenshot loads url in a headless Chromium, lets the page's scripts run
// as RenderDOM does, and writes a PNG of the window, ScreenshotWidth by
// ScreenshotHeight pixels, to pngPath. Only what fits in the window is in
// the picture. It fails the test if Chromium fails, outlives the Backstop,
// or leaves no PNG at pngPath.
func Screenshot(t testing.TB, chromium, url, pngPath string) {
	t.Helper()
	// Chromium resolves a relative path against its own working directory,
	// and a file left by an earlier run must not pass for this one's.
	abs, err := filepath.Abs(pngPath)
	require.NoError(t, err)
	if err := os.Remove(abs); err != nil && !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}
	runChromium(t, chromium,
		"--screenshot="+abs,
		// A fixed window, so the picture has the same size on every machine.
		"--window-size="+strconv.Itoa(ScreenshotWidth)+","+strconv.Itoa(ScreenshotHeight),
		// One CSS pixel is one pixel of the PNG, whatever the machine's scale.
		"--force-device-scale-factor=1",
		// Scroll bars would take pixels from the page, and differ between
		// a page that fits and one that does not.
		"--hide-scrollbars",
		url)
	png, err := os.ReadFile(abs)
	require.NoError(t, err, "chromium wrote no screenshot of %s: the page did not load", url)
	require.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")), "%s is not a PNG", abs)
}

// runChromium runs a headless Chromium with the flags every use needs, then
// extra, and returns what it printed on standard output. The process is
// killed if it outlives the Backstop, and always waited for.
func runChromium(t testing.TB, chromium string, extra ...string) string {
	t.Helper()
	scratch := t.TempDir()
	args := []string{
		// No window and no display server: CI has neither.
		"--headless",
		// Chromium's sandbox refuses to start as root, and CI runs as root.
		// The pages it loads are the test's own.
		"--no-sandbox",
		// No GPU on CI; draw in software from the start instead of probing.
		"--disable-gpu",
		// Shared memory goes to the temporary directory, not /dev/shm, which
		// a container may cap at 64 MB. Debian's launcher adds this flag by
		// itself when /dev/shm is small, but its check breaks (an error on
		// standard error, no flag) when /dev/shm is mounted twice.
		"--disable-dev-shm-usage",
		// A throwaway profile: no state carried from one run to the next or
		// shared with another test.
		"--user-data-dir=" + filepath.Join(scratch, "profile"),
		// Wait for the page's fetches and timers before reading it (see
		// virtualTimeBudget). Without it Chromium reads the page as soon as
		// it has loaded, before an asynchronous fetch has come back.
		"--virtual-time-budget=" + strconv.Itoa(virtualTimeBudget),
		// Chromium's log on standard error: with it, the page's console
		// messages and uncaught errors, which explain a page that did not
		// render.
		"--enable-logging=stderr",
		// Skip the first-run dialogs and checks a new profile would do.
		"--no-first-run",
	}
	args = append(args, extra...)

	ctx, cancel := context.WithTimeout(context.Background(), Backstop)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, args...)
	// Whatever the profile flag says, Chromium keeps its crash database in
	// $HOME/.config/chromium and a dconf cache in $HOME/.cache. A home of
	// its own keeps those in the test's temporary directory too, and keeps
	// out the user's own font settings.
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(scratch, "home"), "XDG_CONFIG_HOME=", "XDG_CACHE_HOME=")
	// Chromium's helper processes inherit its standard output and error; if
	// one outlives the browser, stop waiting for it to close them.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t.Cleanup(func() {
		// Logged at the end, so that a check the caller makes on the DOM,
		// and not only a failure here, shows what the page said.
		if t.Failed() {
			t.Logf("%s %v\nstderr:\n%s", chromium, args, stderr.String())
		}
	})
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %v: %w", ctx.Err(), Backstop, err)
	}
	require.NoError(t, err, "chromium failed on %v", extra)
	return stdout.String()
}
