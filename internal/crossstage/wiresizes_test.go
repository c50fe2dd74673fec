package crossstage

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	jsontcp "github.com/rpc-from-scratch/course/02-json-tcp"
	customproto "github.com/rpc-from-scratch/course/03-custom-protocol"
	gobrpc "github.com/rpc-from-scratch/course/04-gob-binary"
	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/require"
)

// TestWireSizes makes the same calls through the clients of stages 02, 03
// and 04, each stage on a connection of its own, and counts the bytes that
// each call puts on the wire, both ways. The table is testdata/sizes.golden,
// which lesson 04 quotes: if a stage's wire changes, this test says so.
func TestWireSizes(t *testing.T) {
	kib := strings.Repeat("0123456789abcdef", 64)
	rows := []string{"add(1, 2), the first call", "add(1, 2) again", `echo("hello")`, "echo of 1 KiB"}
	stages := []struct {
		name  string
		srv   server
		calls func(conn net.Conn) []func(context.Context) error
	}{
		{"02, JSON", jsontcp.NewDemoServer(), func(conn net.Conn) []func(context.Context) error {
			c := jsontcp.DemoClient{Client: jsontcp.NewClient(conn)}
			add := func(ctx context.Context) error { return want(3)(c.Add(ctx, 1, 2, 0)) }
			return []func(context.Context) error{add, add, echo(c.Echo, "hello"), echo(c.Echo, kib)}
		}},
		{"03, text", customproto.NewDemoServer(), func(conn net.Conn) []func(context.Context) error {
			c := customproto.DemoClient{Client: customproto.NewClient(conn)}
			add := func(ctx context.Context) error { return want(3)(c.Add(ctx, 1, 2)) }
			return []func(context.Context) error{add, add, echo(c.Echo, "hello"), echo(c.Echo, kib)}
		}},
		{"04, gob", gobrpc.NewDemoServer(), func(conn net.Conn) []func(context.Context) error {
			c := gobrpc.DemoClient{Client: gobrpc.NewClient(conn)}
			add := func(ctx context.Context) error { return want(3)(c.Add(ctx, 1, 2)) }
			return []func(context.Context) error{add, add, echo(c.Echo, "hello"), echo(c.Echo, kib)}
		}},
	}
	sizes := make([][]string, len(rows))
	for _, st := range stages {
		conn := dialCounting(t, serve(t, st.srv))
		for i, call := range st.calls(conn) {
			sent, received := conn.sent.Load(), conn.received.Load()
			require.NoError(t, call(t.Context()), "stage %s, %s", st.name, rows[i])
			sizes[i] = append(sizes[i], fmt.Sprintf("%7d %8d", conn.sent.Load()-sent, conn.received.Load()-received))
		}
	}

	var table strings.Builder
	fmt.Fprintf(&table, "%-26s", "bytes on the wire")
	for _, st := range stages {
		fmt.Fprintf(&table, " %16s", "stage "+st.name)
	}
	fmt.Fprintf(&table, "\n%-26s%s\n", "", strings.Repeat("     sent received", len(stages)))
	for i, row := range rows {
		fmt.Fprintf(&table, "%-26s  %s\n", row, strings.Join(sizes[i], "  "))
	}
	rpctest.Golden(t, filepath.Join("testdata", "sizes.golden"), []byte(table.String()))
}

// want returns a check that a call returned want and no error.
func want[T comparable](want T) func(T, error) error {
	return func(got T, err error) error {
		if err == nil && got != want {
			err = fmt.Errorf("got %v, want %v", got, want)
		}
		return err
	}
}

// echo returns a call of a stage's Echo stub with s, which checks the
// answer.
func echo(stub func(context.Context, string) (string, error), s string) func(context.Context) error {
	return func(ctx context.Context) error { return want(s)(stub(ctx, s)) }
}

// countingConn is a connection that counts the bytes it sends and
// receives.
type countingConn struct {
	net.Conn
	sent, received atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// dialCounting dials addr and returns a counting connection, closed when
// the test ends.
func dialCounting(t *testing.T, addr string) *countingConn {
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &countingConn{Conn: conn}
}
