package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// NetHTTP is net/http on both sides, with keep-alive: the same two
// procedures as stage 06 offers them, GET /add?a=1&b=2 answered with the
// sum in decimal, and POST /echo with a JSON string answered with the same
// string. The handlers are written for net/http, with nothing between
// (stage 06's Handler adapter is not here: 06-wsgi-router's own
// benchmarks set the two apart). The client's transport keeps up to 64
// idle connections, so one client serves many callers at once, a
// connection each.
func NetHTTP() System {
	return System{
		Name: "net-http",
		Serve: func(l net.Listener) func() error {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /add", httpAdd)
			mux.HandleFunc("POST /echo", httpEcho)
			s := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			return serveStage(s, l)
		},
		Dial: func(_ context.Context, addr string) (Client, error) {
			t := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
			return &httpClient{base: "http://" + addr, c: &http.Client{Transport: t}, t: t}, nil
		},
		Shared: "shared",
	}
}

func httpAdd(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a, err1 := strconv.Atoi(q.Get("a"))
	b, err2 := strconv.Atoi(q.Get("b"))
	if err1 != nil || err2 != nil {
		http.Error(w, "add takes two integers: /add?a=1&b=2", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, strconv.Itoa(a+b))
}

func httpEcho(w http.ResponseWriter, r *http.Request) {
	var text string
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&text); err != nil {
		http.Error(w, "echo takes a JSON string: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(text)
}

type httpClient struct {
	base string
	c    *http.Client
	t    *http.Transport
}

func (c *httpClient) do(req *http.Request) ([]byte, error) {
	resp, err := c.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	return body, nil
}

func (c *httpClient) Add(ctx context.Context, a, b int) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/add?a="+strconv.Itoa(a)+"&b="+strconv.Itoa(b), nil)
	if err != nil {
		return 0, err
	}
	body, err := c.do(req)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(body))
}

func (c *httpClient) Echo(ctx context.Context, text string) (string, error) {
	body, err := json.Marshal(text)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/echo", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	ans, err := c.do(req)
	if err != nil {
		return "", err
	}
	var out string
	err = json.Unmarshal(ans, &out)
	return out, err
}

func (c *httpClient) Close() error {
	c.t.CloseIdleConnections()
	return nil
}
