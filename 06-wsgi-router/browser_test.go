package wsgirouter

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The browser tests load the index page in a real browser, headless
// Chromium, from our server. They skip when Chromium is missing, unless
// RPC_BROWSER=required (as in CI).

// screenshotPath is the picture of the index page that lesson 06 shows.
// `go test ./06-wsgi-router/ -run TestBrowser -update` takes it again.
var screenshotPath = filepath.Join("..", "docs", "img", "06-index.png")

// TestBrowserRendersServers loads / in Chromium. The HTML the server sends
// has no server in it; the page's script asks GET /api/v1.0/servers and
// draws one line per server. The DOM Chromium shows afterwards has them
// all, so the script ran, its request reached the API through our server,
// and the answer was JSON the browser could read.
func TestBrowserRendersServers(t *testing.T) {
	chromium := rpctest.Chromium(t)
	addr := serve(t, NewServer(demoApp(t)), rpctest.Listen(t))

	raw, err := client(t, addr).Get(t.Context(), "/")
	require.NoError(t, err)
	for _, s := range DemoServers {
		require.NotContains(t, string(raw.Body), s.Host, "the page as sent must not list the servers already")
	}

	dom := rpctest.RenderDOM(t, chromium, "http://"+addr+"/")
	items := regexp.MustCompile(`<li class="server (up|down)">([^<]*)</li>`).FindAllStringSubmatch(dom, -1)
	require.Len(t, items, len(DemoServers), "one line per server in:\n%s", dom)
	for i, s := range DemoServers {
		assert.Equal(t, s.Status, items[i][1])
		assert.Contains(t, items[i][2], s.Name)
		assert.Contains(t, items[i][2], s.Host)
	}
	assert.NotContains(t, dom, "asking the API", "the placeholder line is replaced")
}

// TestBrowserScreenshot takes a picture of the index page as Chromium draws
// it. With -update it writes the lesson's picture; otherwise it checks that
// a picture of the right size can be taken, and that the lesson's is one.
func TestBrowserScreenshot(t *testing.T) {
	chromium := rpctest.Chromium(t)
	addr := serve(t, NewServer(demoApp(t)), rpctest.Listen(t))

	path := filepath.Join(t.TempDir(), "index.png")
	if rpctest.Updating() {
		path = screenshotPath
	}
	rpctest.Screenshot(t, chromium, "http://"+addr+"/", path)
	for _, p := range []string{path, screenshotPath} {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		require.NoError(t, err, p)
		assert.Equal(t, rpctest.ScreenshotWidth, cfg.Width, p)
		assert.Equal(t, rpctest.ScreenshotHeight, cfg.Height, p)
	}
}
