package atmostonce

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// serve runs srv on l until the test ends, then shuts it down and checks that
// Serve returned nil. It returns the address to dial.
func serve(t testing.TB, srv *Server, l net.Listener) string {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.ErrorIs(t, <-served, ErrServerClosed)
	})
	return l.Addr().String()
}

// dial returns a client of the server at addr, closed when the test ends.
func dial(t testing.TB, addr string, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(context.Background(), addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// holdCalls makes every call to srv wait, once it has reached the server,
// until release is called. entered receives once for each call that waits.
func holdCalls(srv *Server) (entered chan struct{}, release func()) {
	entered, held := make(chan struct{}, 8), make(chan struct{})
	srv.beforeAnswer = func(*Request) {
		entered <- struct{}{}
		<-held
	}
	return entered, sync.OnceFunc(func() { close(held) })
}

// testClock is the demo service's clock in a test: each slow(ms) call
// sleeps until the test wakes ms, so the test, not the scheduler, decides
// in which order slow calls end. Other calls do not sleep. It may be used by
// many goroutines at once.
type testClock struct {
	asleep chan time.Duration // receives ms of each slow call as it starts to sleep

	mu     sync.Mutex // protects alarms, awake
	alarms map[time.Duration]chan struct{}
	awake  bool // after wakeAll, no call sleeps
}

// Sleep is Service.Sleep: it waits until the test wakes d, or ctx ends.
func (c *testClock) Sleep(ctx context.Context, d time.Duration) error {
	alarm := c.alarm(d)
	c.asleep <- d
	select {
	case <-alarm:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// alarm returns the channel closed when d is woken.
func (c *testClock) alarm(d time.Duration) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	alarm, ok := c.alarms[d]
	if !ok {
		alarm = make(chan struct{})
		if c.awake {
			close(alarm)
		}
		c.alarms[d] = alarm
	}
	return alarm
}

// wake ends every slow(ms) call, now and from now on.
func (c *testClock) wake(ms int) {
	alarm := c.alarm(time.Duration(ms) * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-alarm:
	default:
		close(alarm)
	}
}

// wakeAll ends every slow call, now and from now on.
func (c *testClock) wakeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.awake = true
	for _, alarm := range c.alarms {
		select {
		case <-alarm:
		default:
			close(alarm)
		}
	}
}

// waitAsleep waits until n slow calls have started to sleep.
func (c *testClock) waitAsleep(t testing.TB, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.asleep:
		case <-time.After(rpctest.Backstop):
			t.Fatal("a slow call never reached the server")
		}
	}
}

// slowServer serves the demo service on a test clock until the test ends.
// It returns the address to dial, and the clock.
func slowServer(t testing.TB) (addr string, clock *testClock) {
	t.Helper()
	clock = &testClock{asleep: make(chan time.Duration, 1024), alarms: map[time.Duration]chan struct{}{}}
	addr = serve(t, NewDemoServer(Service{Sleep: clock.Sleep}), rpctest.Listen(t))
	t.Cleanup(clock.wakeAll) // runs before the server's shutdown, which waits for sleeping calls
	return addr, clock
}

// heldConn is a client's connection whose writes wait until release is
// called, or the connection is closed. It counts the writes.
type heldConn struct {
	net.Conn
	writing chan struct{} // receives as a write starts, unless it is full
	held    chan struct{} // closed by release
	release func()
	writes  atomic.Int64
}

// holdWrites dials addr and returns the connection, its writes held.
func holdWrites(t testing.TB, addr string) *heldConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	held := make(chan struct{})
	c := &heldConn{Conn: conn, writing: make(chan struct{}, 1), held: held, release: sync.OnceFunc(func() { close(held) })}
	t.Cleanup(func() { c.Close() })
	return c
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	select {
	case c.writing <- struct{}{}:
	default:
	}
	<-c.held
	return c.Conn.Write(p)
}

// Close releases the writes, as closing a real connection ends the write
// it blocks, and closes the connection.
func (c *heldConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// pendingCalls returns how many calls c has registered and not ended.
func pendingCalls(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// articleTime is the moment of the article's own output, which shows
// get_time returning part of "Wed Jan 16 22:05:31 2019".
var articleTime = time.Date(2019, time.January, 16, 22, 5, 31, 0, time.Local)

// newStoppedClockServer returns a server of the demo service whose clock
// always reads articleTime, so that get_time's answer can be checked.
func newStoppedClockServer(t testing.TB) *Server {
	t.Helper()
	srv := NewServer()
	skipped, err := srv.Register(Service{Now: func() time.Time { return articleTime }})
	require.NoError(t, err)
	require.Empty(t, skipped)
	return srv
}
