package rpctest

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// itemsPage is a page that has no items until its script has run: the
// script waits on a chain of promises and a timer, fetches data.json, and
// only then adds one <li> per item and a blue square in the bottom right
// corner of the window.
const itemsPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>items</title></head>
<body>
<h1>Items</h1>
<ul id="items"></ul>
<script>
Promise.resolve()
	.then(() => new Promise(resolve => setTimeout(resolve, 20)))
	.then(() => fetch("data.json"))
	.then(response => response.json())
	.then(items => {
		const list = document.getElementById("items");
		for (const item of items) {
			const li = document.createElement("li");
			li.textContent = item;
			list.appendChild(li);
		}
		const square = document.createElement("div");
		square.id = "loaded";
		square.style.cssText = "position:fixed;right:0;bottom:0;width:100px;height:100px;background:#0000ff";
		document.body.appendChild(square);
	})
	.catch(err => console.error("items page: " + err));
</script>
</body></html>
`

// itemsServer serves itemsPage at / and its items at /data.json on a free
// loopback port until the test ends. It returns the page's URL and a count
// of the requests for /data.json.
func itemsServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var fetches atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, itemsPage)
	})
	mux.HandleFunc("GET /data.json", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `["alpha","beta","gamma"]`)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = Listen(t)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + "/", &fetches
}

func TestRenderDOMRunsScripts(t *testing.T) {
	chromium := Chromium(t)
	url, fetches := itemsServer(t)

	// The HTML the server sends has no items: only the script can add them.
	resp, err := http.Get(url)
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.NotContains(t, string(raw), "<li>")
	require.NotContains(t, string(raw), "alpha")

	dom := RenderDOM(t, chromium, url)
	assert.Contains(t, dom, `<ul id="items"><li>alpha</li><li>beta</li><li>gamma</li></ul>`)
	assert.Contains(t, dom, `<div id="loaded"`)
	assert.Equal(t, int64(1), fetches.Load(), "requests for /data.json")
}

func TestScreenshot(t *testing.T) {
	chromium := Chromium(t)
	url, fetches := itemsServer(t)
	path := filepath.Join(t.TempDir(), "items.png")

	Screenshot(t, chromium, url, path)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")), "PNG signature")
	config, format, err := image.DecodeConfig(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, "png", format)
	assert.Equal(t, ScreenshotWidth, config.Width, "width")
	assert.Equal(t, ScreenshotHeight, config.Height, "height")
	assert.Equal(t, int64(1), fetches.Load(), "requests for /data.json")

	img, err := png.Decode(bytes.NewReader(data))
	require.NoError(t, err)
	// The blue square is there only if the picture was taken after the
	// fetch came back.
	r, g, b, _ := img.At(ScreenshotWidth-50, ScreenshotHeight-50).RGBA()
	assert.Equal(t, [3]uint32{0, 0, 0xffff}, [3]uint32{r, g, b}, "colour of the square the script adds")
	// Dark pixels in the top left corner are the heading and the items: the
	// text was drawn. Without a font installed the picture is all white.
	assert.Greater(t, darkPixels(img, image.Rect(0, 0, 300, 200)), 100, "dark pixels where the text is")
}

// darkPixels counts the pixels in area whose red, green and blue are all
// below half.
func darkPixels(img image.Image, area image.Rectangle) int {
	n := 0
	for y := area.Min.Y; y < area.Max.Y; y++ {
		for x := area.Min.X; x < area.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r < 0x8000 && g < 0x8000 && b < 0x8000 {
				n++
			}
		}
	}
	return n
}

// TestChromiumMissingSkipsOrFails runs Chromium on a goroutine of its own,
// since ending a test ends the goroutine it runs on.
func TestChromiumMissingSkipsOrFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no browser anywhere
	call := func() *recorder {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Chromium(r)
		}()
		<-done
		return r
	}

	t.Setenv(BrowserEnv, "")
	r := call()
	assert.Contains(t, r.skipped, "chromium is not on PATH")
	assert.Contains(t, r.skipped, fmt.Sprintf("%s=required", BrowserEnv))
	assert.Empty(t, r.failed)

	t.Setenv(BrowserEnv, "required")
	r = call()
	assert.Contains(t, r.failed, "chromium is not on PATH, and RPC_BROWSER=required")
	assert.Empty(t, r.skipped)
}

// failRecorder is a testing.TB that records a failure instead of failing
// the test, as require reports it: Errorf, then FailNow.
type failRecorder struct {
	testing.TB
	errored string
}

func (r *failRecorder) Helper()                           {}
func (r *failRecorder) Errorf(format string, args ...any) { r.errored += fmt.Sprintf(format, args...) }
func (r *failRecorder) FailNow()                          { runtime.Goexit() }

func TestRenderDOMFailsWhenThePageDoesNotLoad(t *testing.T) {
	chromium := Chromium(t)
	// A server that closes every connection at once: Chromium gets no page,
	// prints nothing and still exits with status 0.
	addr := ServeConns(t, func(net.Conn) {})
	r := &failRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		RenderDOM(r, chromium, "http://"+addr+"/")
	}()
	<-done
	assert.Contains(t, r.errored, "chromium printed no DOM")
}
