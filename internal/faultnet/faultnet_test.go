package faultnet

import (
	"context"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	rpctest.VerifyMain(m)
}

// The tests below run in a synctest bubble over net.Pipe made inside it, so
// that every wait is in fake time and is asserted exactly. net.Pipe has no
// buffer: a Write returns when the other side has read it all. The few tests
// at the end use real TCP for what only the kernel does (reset, FIN).

// readAll reads from c until it fails and returns what it read and the error.
func readAll(c net.Conn) (string, error) {
	var b strings.Builder
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), err
		}
	}
}

// received runs readAll on c in a goroutine; the channel gives its result.
func received(c net.Conn) <-chan string {
	done := make(chan string, 1)
	go func() {
		s, _ := readAll(c)
		done <- s
	}()
	return done
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		None: "none", Cut: "cut", LoseAnswer: "lose-answer", Delay: "delay",
		Stall: "stall", Reset: "reset", Kind(9): "Kind(9)",
	} {
		assert.Equal(t, want, k.String())
	}
}

func TestFaultString(t *testing.T) {
	for f, want := range map[Fault]string{
		{}:                     "no fault",
		{Kind: Cut, After: 30}: "cut after 30 bytes",
		{Kind: LoseAnswer}:     "lose the answer",
		{Kind: Delay, Delay: 10 * time.Millisecond}: "delay each write 10ms",
		{Kind: Stall, After: 0}:                     "stall after 0 bytes",
		{Kind: Reset, After: 7}:                     "reset after 7 bytes",
	} {
		assert.Equal(t, want, f.String())
	}
}

func TestCutDeliversExactlyAfterBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script(Fault{Kind: Cut, After: 8})
		var fired []int
		n.OnFault(func(conn int, f Fault) { fired = append(fired, conn) })
		a, b := net.Pipe()
		c := n.Conn(a)
		got := received(b)

		k, err := c.Write([]byte("hello"))
		require.NoError(t, err, "5 of 8 bytes: the cut is not reached")
		assert.Equal(t, 5, k)
		assert.Empty(t, fired, "not fired yet")

		k, err = c.Write([]byte(", world"))
		assert.Equal(t, 3, k, "the write that crosses After sends up to After")
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.Equal(t, "hello, w", <-got, "exactly After bytes arrive, then EOF")
		assert.Equal(t, []int{0}, fired)
		assert.Equal(t, map[Kind]int{Cut: 1}, n.Fired())

		_, err = c.Write([]byte("x"))
		assert.ErrorIs(t, err, net.ErrClosed)
		_, err = c.Read(make([]byte, 1))
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.Equal(t, map[Kind]int{Cut: 1}, n.Fired(), "a fault fires once per conn")
		require.NoError(t, b.Close())
	})
}

func TestCutAtZeroSendsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := Script(Fault{Kind: Cut}).Conn(a)
		k, err := c.Write([]byte("hello")) // no reader: nothing to wait for
		assert.Equal(t, 0, k)
		assert.ErrorIs(t, err, net.ErrClosed)
		got, err := readAll(b)
		assert.Equal(t, "", got)
		assert.ErrorIs(t, err, io.EOF)
		require.NoError(t, b.Close())
	})
}

func TestCutEndsABlockedRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := Script(Fault{Kind: Cut}).Conn(a)
		readErr := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			readErr <- err
		}()
		synctest.Wait() // the read waits in net.Pipe
		_, err := c.Write([]byte("x"))
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.ErrorIs(t, <-readErr, net.ErrClosed, "net.Pipe says io.ErrClosedPipe; the wrapper says net.ErrClosed")
		require.NoError(t, b.Close())
	})
}

func TestLoseAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script(Fault{Kind: LoseAnswer})
		client, s := net.Pipe()
		server := n.Conn(s)
		served := make(chan struct{})
		go func() {
			defer close(served)
			_, _ = server.Write([]byte("hi")) // a greeting, before any read: it passes
			buf := make([]byte, 16)
			k, _ := server.Read(buf)
			assert.Equal(t, "request", string(buf[:k]))
			assert.Empty(t, n.Fired(), "reading does not fire it")
			k, err := server.Write([]byte("answer"))
			assert.Equal(t, 0, k)
			assert.ErrorIs(t, err, net.ErrClosed)
		}()
		buf := make([]byte, 2)
		_, err := io.ReadFull(client, buf)
		assert.NoError(t, err)
		assert.Equal(t, "hi", string(buf))
		_, err = client.Write([]byte("request"))
		assert.NoError(t, err, "the request arrives")
		got, err := readAll(client)
		assert.Equal(t, "", got, "the answer is lost")
		assert.ErrorIs(t, err, io.EOF)
		<-served
		assert.Equal(t, map[Kind]int{LoseAnswer: 1}, n.Fired())
		require.NoError(t, client.Close())
	})
}

func TestDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Spec{Delay: 1, DelayBy: 20 * time.Millisecond})
		a, b := net.Pipe()
		c := n.Conn(a)
		go func() {
			for range 3 {
				_, err := c.Write([]byte("x"))
				assert.NoError(t, err)
			}
		}()
		start := time.Now()
		buf := make([]byte, 1)
		for i := range 3 {
			_, err := b.Read(buf)
			require.NoError(t, err)
			assert.Equal(t, time.Duration(i+1)*20*time.Millisecond, time.Since(start), "write %d", i)
		}
		assert.Equal(t, map[Kind]int{Delay: 1}, n.Fired(), "fires once, however many writes it delays")
		require.NoError(t, c.Close())
		require.NoError(t, b.Close())
	})
}

func TestDelayDefaultAndDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := New(Spec{Delay: 1}).Conn(a)
		start := time.Now()
		require.NoError(t, c.SetWriteDeadline(start.Add(4*time.Millisecond)))
		_, err := c.Write([]byte("x"))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the default 10ms pause outlasts the deadline")
		assert.Equal(t, 4*time.Millisecond, time.Since(start))
		require.NoError(t, c.Close())
		require.NoError(t, b.Close())
	})
}

func TestStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script(Fault{Kind: Stall, After: 3})
		a, b := net.Pipe()
		c := n.Conn(a)
		got := received(b)

		k, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		assert.Equal(t, 5, k, "a stalled write succeeds")
		k, err = c.Write([]byte("more"))
		require.NoError(t, err)
		assert.Equal(t, 4, k)
		assert.Equal(t, map[Kind]int{Stall: 1}, n.Fired())
		require.NoError(t, c.SetWriteDeadline(time.Now()))
		_, err = c.Write([]byte("late"))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a passed deadline still fails a write")
		require.NoError(t, c.SetWriteDeadline(time.Time{}))

		// The peer's writes are read and dropped: they succeed, and the
		// stalled side's read ends only at its deadline.
		start := time.Now()
		require.NoError(t, c.SetReadDeadline(start.Add(time.Second)))
		readErr := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 16))
			readErr <- err
		}()
		_, err = b.Write([]byte("ping"))
		require.NoError(t, err)
		err = <-readErr
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start), "exactly at the read deadline")

		require.NoError(t, c.Close())
		assert.Equal(t, "hel", <-got, "After bytes arrived, and nothing after")
		require.NoError(t, b.Close())
	})
}

func TestStallCloseEndsRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := Script(Fault{Kind: Stall}).Conn(a)
		_, err := c.Write([]byte("x"))
		require.NoError(t, err)
		readErr := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			readErr <- err
		}()
		synctest.Wait()
		require.NoError(t, c.Close())
		assert.ErrorIs(t, <-readErr, net.ErrClosed)
		require.NoError(t, b.Close())
	})
}

func TestResetOverPipeCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := Script(Fault{Kind: Reset, After: 2}).Conn(a)
		got := received(b)
		k, err := c.Write([]byte("abc"))
		assert.Equal(t, 2, k)
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.Equal(t, "ab", <-got)
		require.NoError(t, b.Close())
	})
}

func TestPartitionHoldsBytesUntilHeal(t *testing.T) {
	for _, tc := range []struct {
		name           string
		writer, reader bool // which ends are wrapped
	}{
		{"both ends wrapped", true, true},
		{"writer wrapped", true, false},
		{"reader wrapped", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := Script()
				a, b := net.Pipe()
				if tc.writer {
					a = n.Conn(a)
				}
				if tc.reader {
					b = n.Conn(b)
				}
				n.Partition()
				sent := make(chan struct{})
				go func() {
					defer close(sent)
					for _, s := range []string{"one ", "two ", "three"} {
						_, err := a.Write([]byte(s))
						assert.NoError(t, err)
					}
					assert.NoError(t, a.Close())
				}()
				got := received(b)
				time.Sleep(time.Hour) // fake time: an hour of partition
				synctest.Wait()
				select {
				case s := <-got:
					t.Fatalf("read %q during the partition", s)
				case <-sent:
					t.Fatal("the writes went through during the partition")
				default:
				}
				n.Heal()
				assert.Equal(t, "one two three", <-got, "every byte, in order")
				<-sent
				require.NoError(t, b.Close())
			})
		})
	}
}

func TestPartitionHoldsBytesAlreadyInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script()
		a, peer := net.Pipe()
		c := n.Conn(a)
		readErr := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 16))
			readErr <- err
		}()
		synctest.Wait() // the read waits inside net.Pipe
		n.Partition()
		start := time.Now()
		require.NoError(t, c.SetReadDeadline(start.Add(time.Minute)))
		_, err := peer.Write([]byte("held")) // an unwrapped peer: its bytes arrive
		require.NoError(t, err)
		synctest.Wait()
		assert.Empty(t, readErr, "arrived bytes are held, not delivered")
		assert.ErrorIs(t, <-readErr, os.ErrDeadlineExceeded, "the deadline still ends the read")
		assert.Equal(t, time.Minute, time.Since(start))
		require.NoError(t, c.SetReadDeadline(time.Time{}))
		n.Heal()
		buf := make([]byte, 16)
		k, err := c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "held", string(buf[:k]), "the held bytes come after Heal")
		go func() { _, _ = peer.Write([]byte("next")) }()
		k, err = c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "next", string(buf[:k]), "held bytes are delivered once")
		require.NoError(t, c.Close())
		require.NoError(t, peer.Close())
	})
}

func TestPartitionWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script()
		a, b := net.Pipe()
		c := n.Conn(a)
		n.Partition()
		start := time.Now()
		require.NoError(t, c.SetWriteDeadline(start.Add(2*time.Second)))
		_, err := c.Write([]byte("x"))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
		assert.Equal(t, 2*time.Second, time.Since(start), "exactly at the deadline")

		// A deadline moved while the write waits counts from then on.
		start = time.Now()
		require.NoError(t, c.SetWriteDeadline(start.Add(time.Hour)))
		writeErr := make(chan error, 1)
		go func() {
			_, err := c.Write([]byte("x"))
			writeErr <- err
		}()
		time.Sleep(time.Second) // fake time
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(3*time.Second)))
		assert.ErrorIs(t, <-writeErr, os.ErrDeadlineExceeded)
		assert.Equal(t, 4*time.Second, time.Since(start))

		// Close ends a blocked write too.
		go func() {
			_, err := c.Write([]byte("x"))
			writeErr <- err
		}()
		require.NoError(t, c.SetWriteDeadline(time.Time{}))
		synctest.Wait()
		require.NoError(t, c.Close())
		assert.ErrorIs(t, <-writeErr, net.ErrClosed)
		n.Heal()
		require.NoError(t, b.Close())
	})
}

func TestDialWaitsOutAPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script()
		var peers []net.Conn
		dial := func(context.Context) (net.Conn, error) {
			a, b := net.Pipe()
			peers = append(peers, b)
			return a, nil
		}
		n.Partition()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := n.Dial(ctx, dial)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Empty(t, peers, "no dial during the partition")

		dialed := make(chan net.Conn, 1)
		go func() {
			c, err := n.Dial(t.Context(), dial)
			assert.NoError(t, err)
			dialed <- c
		}()
		synctest.Wait()
		assert.Empty(t, dialed)
		n.Heal()
		c := <-dialed
		require.Len(t, peers, 1)
		require.NoError(t, c.Close())
		require.NoError(t, peers[0].Close())

		_, err = n.Dial(t.Context(), func(context.Context) (net.Conn, error) { return nil, io.ErrUnexpectedEOF })
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	})
}

// pipeListener accepts the server ends of the pipes Dial makes.
type pipeListener struct {
	conns chan net.Conn
}

func (l *pipeListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *pipeListener) Close() error   { close(l.conns); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestListenerWrapsInAcceptOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script(Fault{}, Fault{Kind: Cut})
		var fired []int
		n.OnFault(func(conn int, f Fault) {
			fired = append(fired, conn)
			assert.Equal(t, Fault{Kind: Cut}, f)
		})
		pl := &pipeListener{conns: make(chan net.Conn, 2)}
		l := n.Listener(pl)
		var clients []net.Conn
		for range 2 {
			a, b := net.Pipe()
			pl.conns <- a
			clients = append(clients, b)
		}
		for i := range 2 {
			c, err := l.Accept()
			require.NoError(t, err)
			got := received(clients[i])
			_, err = c.Write([]byte("hi"))
			if i == 0 {
				assert.NoError(t, err, "conn 0 has no fault")
				require.NoError(t, c.Close())
				assert.Equal(t, "hi", <-got)
			} else {
				assert.ErrorIs(t, err, net.ErrClosed, "conn 1 is cut at 0")
				assert.Equal(t, "", <-got)
			}
			require.NoError(t, clients[i].Close())
		}
		assert.Equal(t, []int{1}, fired)
		require.NoError(t, l.Close())
		_, err := l.Accept()
		assert.ErrorIs(t, err, net.ErrClosed)
	})
}

func TestOnFaultAndFiredCountFiredFaultsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script(Fault{Kind: Cut, After: 100}, Fault{Kind: LoseAnswer}, Fault{Kind: Stall, After: 10})
		calls := 0
		n.OnFault(func(int, Fault) { calls++ })
		for range 3 {
			a, b := net.Pipe()
			c := n.Conn(a)
			got := received(b)
			_, err := c.Write([]byte("hello")) // no read before it, and under every After
			require.NoError(t, err)
			require.NoError(t, c.Close())
			assert.Equal(t, "hello", <-got)
			require.NoError(t, b.Close())
		}
		assert.Empty(t, n.Fired(), "assigned is not fired")
		assert.Equal(t, 0, calls)
	})
}

func TestConcurrentReadAndWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(Spec{Delay: 1})
		a, b := net.Pipe()
		ca, cb := n.Conn(a), n.Conn(b)
		var wg sync.WaitGroup
		echo := func(c net.Conn) {
			wg.Go(func() {
				for range 50 {
					_, err := c.Write([]byte("ping"))
					assert.NoError(t, err)
				}
			})
			wg.Go(func() {
				buf := make([]byte, 4)
				for range 50 {
					_, err := io.ReadFull(c, buf)
					assert.NoError(t, err)
				}
			})
		}
		echo(ca)
		echo(cb)
		wg.Wait()
		assert.Equal(t, map[Kind]int{Delay: 2}, n.Fired())
		require.NoError(t, ca.Close())
		require.NoError(t, cb.Close())
	})
}

func TestCloseEndsABlockedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		c := Script().Conn(a)
		writeErr := make(chan error, 1)
		go func() {
			_, err := c.Write([]byte("nobody reads this"))
			writeErr <- err
		}()
		synctest.Wait() // the write waits in net.Pipe for a reader
		require.NoError(t, c.Close())
		assert.ErrorIs(t, <-writeErr, net.ErrClosed, "net.Pipe says io.ErrClosedPipe; the wrapper says net.ErrClosed")
		require.NoError(t, b.Close())
	})
}

func TestCloseTwice(t *testing.T) {
	a, b := net.Pipe()
	c := Script().Conn(a)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.Close(), net.ErrClosed)
	require.NoError(t, b.Close())
}

// faultsOf wraps count pipes with n and returns the faults they got.
func faultsOf(n *Net, count int) []Fault {
	faults := make([]Fault, count)
	for i := range faults {
		a, b := net.Pipe()
		faults[i] = n.Conn(a).(*conn).fault
		a.Close()
		b.Close()
	}
	return faults
}

func TestNewIsDeterministic(t *testing.T) {
	spec := Spec{Seed: 7, Cut: 0.2, LoseAnswer: 0.2, Delay: 0.2, Stall: 0.2, Reset: 0.1}
	first := faultsOf(New(spec), 200)
	assert.Equal(t, first, faultsOf(New(spec), 200), "same seed, same faults")
	spec.Seed = 8
	assert.NotEqual(t, first, faultsOf(New(spec), 200), "another seed, other faults")

	// Connection i's fault depends on i only, not on the Net's history.
	n := New(Spec{Seed: 7, Cut: 0.2, LoseAnswer: 0.2, Delay: 0.2, Stall: 0.2, Reset: 0.1})
	assert.Equal(t, first[:100], faultsOf(n, 100))
	assert.Equal(t, first[100:], faultsOf(n, 100))
}

func TestRatesComeOutNearTheSpec(t *testing.T) {
	spec := Spec{Seed: 1, Cut: 0.1, LoseAnswer: 0.2, Delay: 0.05, Stall: 0.15, Reset: 0.1, MaxAfter: 40, DelayBy: time.Second}
	n := New(spec)
	const draws = 10000
	count := map[Kind]int{}
	afters := map[int]bool{}
	for i := range draws {
		f := n.faultFor(i)
		count[f.Kind]++
		switch f.Kind {
		case Cut, Stall, Reset:
			require.True(t, f.After >= 0 && f.After < 40, "After %d", f.After)
			afters[f.After] = true
		case Delay:
			require.Equal(t, time.Second, f.Delay)
		}
	}
	want := map[Kind]float64{None: 0.4, Cut: 0.1, LoseAnswer: 0.2, Delay: 0.05, Stall: 0.15, Reset: 0.1}
	for k, rate := range want {
		got := float64(count[k]) / draws
		assert.InDelta(t, rate, got, 0.02, "%v: %d of %d", k, count[k], draws) // about 5 standard deviations
	}
	assert.Len(t, afters, 40, "every After in [0, MaxAfter) is drawn")

	// The defaults: After in [0, 64), Delay 10ms.
	n = New(Spec{Seed: 2, Cut: 0.5, Delay: 0.5})
	maxAfter := 0
	for i := range 2000 {
		f := n.faultFor(i)
		maxAfter = max(maxAfter, f.After)
		if f.Kind == Delay {
			require.Equal(t, 10*time.Millisecond, f.Delay)
		}
	}
	assert.Equal(t, 63, maxAfter)
	assert.Equal(t, Fault{}, New(Spec{}).faultFor(0), "the zero Spec: no faults")
}

func TestScriptCycles(t *testing.T) {
	lose := Fault{Kind: LoseAnswer}
	assert.Equal(t, []Fault{{}, {}, lose, {}, {}, lose, {}}, faultsOf(Script(Fault{}, Fault{}, lose), 7))
	assert.Equal(t, []Fault{{}, {}, {}}, faultsOf(Script(), 3))
}

func TestNewPanicsOnABadSpec(t *testing.T) {
	assert.Panics(t, func() { New(Spec{Cut: 0.6, Stall: 0.6}) })
	assert.Panics(t, func() { New(Spec{Reset: -0.1}) })
}

func TestParseSpecRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		out  string
	}{
		{"", Spec{}, ""},
		{"lose-answer=0.05,cut=0.01,seed=7", Spec{Seed: 7, Cut: 0.01, LoseAnswer: 0.05}, "cut=0.01,lose-answer=0.05,seed=7"},
		{" delay = 0.5 , delay-by=20ms, max-after=100 ", Spec{Delay: 0.5, DelayBy: 20 * time.Millisecond, MaxAfter: 100}, "delay=0.5,delay-by=20ms,max-after=100"},
		{"stall=0.25,reset=0.75", Spec{Stall: 0.25, Reset: 0.75}, "stall=0.25,reset=0.75"},
		{"cut=1,seed=18446744073709551615", Spec{Cut: 1, Seed: math.MaxUint64}, "cut=1,seed=18446744073709551615"},
		{"delay=0.1,delay-by=1.5s", Spec{Delay: 0.1, DelayBy: 1500 * time.Millisecond}, "delay=0.1,delay-by=1.5s"},
		{"cut=0.1,lose-answer=0.2,delay=0.3,stall=0.2,reset=0.2", Spec{Cut: 0.1, LoseAnswer: 0.2, Delay: 0.3, Stall: 0.2, Reset: 0.2}, "cut=0.1,lose-answer=0.2,delay=0.3,stall=0.2,reset=0.2"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSpec(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.out, got.String())
			again, err := ParseSpec(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again)
		})
	}
	odd := Spec{Seed: 3, Cut: 1.0 / 3, DelayBy: time.Hour + time.Nanosecond, MaxAfter: 1}
	again, err := ParseSpec(odd.String())
	require.NoError(t, err)
	assert.Equal(t, odd, again)
}

func TestParseSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, mention string
	}{
		{"unknown key", "cut=0.1,drop=0.2", `"drop=0.2"`},
		{"no value", "cut", `"cut"`},
		{"rate above 1", "stall=1.5", `"stall=1.5"`},
		{"rate below 0", "reset=-0.1", `"reset=-0.1"`},
		{"rate not a number", "cut=lots", `"cut=lots"`},
		{"rate NaN", "cut=NaN", `"cut=NaN"`},
		{"sum above 1", "cut=0.5,lose-answer=0.6", "more than 1"},
		{"bad duration", "delay=0.1,delay-by=soon", `"delay-by=soon"`},
		{"negative duration", "delay-by=-1s", `"delay-by=-1s"`},
		{"bad max-after", "max-after=x", `"max-after=x"`},
		{"bad seed", "seed=-1", `"seed=-1"`},
		{"twice", "cut=0.1,cut=0.2", `"cut=0.2"`},
		{"empty item", "cut=0.1,", `""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec(tc.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.mention)
		})
	}
}

// TestResetTCP: the peer of a reset TCP connection sees "connection reset by
// peer", which only the kernel can show.
func TestResetTCP(t *testing.T) {
	l := rpctest.Listen(t)
	n := Script(Fault{Kind: Reset, After: 5})
	wrapped := n.Listener(l)
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := wrapped.Accept()
	require.NoError(t, err)
	defer server.Close()
	require.NoError(t, client.SetDeadline(time.Now().Add(rpctest.Backstop)))

	_, err = server.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(client, buf)
	require.NoError(t, err, "the bytes before After arrive")

	k, err := server.Write([]byte("world"))
	assert.Equal(t, 0, k)
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = client.Read(buf)
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.ErrorContains(t, err, "connection reset by peer")
	assert.Equal(t, map[Kind]int{Reset: 1}, n.Fired())
}

// TestCutTCP: a cut TCP connection sends exactly After bytes, then closes
// politely: the peer reads them, then EOF.
func TestCutTCP(t *testing.T) {
	l := rpctest.Listen(t)
	client, err := Script(Fault{Kind: Cut, After: 3}).Dial(t.Context(), func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", l.Addr().String())
	})
	require.NoError(t, err)
	defer client.Close()
	server, err := l.Accept()
	require.NoError(t, err)
	defer server.Close()
	require.NoError(t, server.SetDeadline(time.Now().Add(rpctest.Backstop)))

	k, err := client.Write([]byte("hello"))
	assert.Equal(t, 3, k)
	assert.ErrorIs(t, err, net.ErrClosed)
	got, err := io.ReadAll(server)
	require.NoError(t, err)
	assert.Equal(t, "hel", string(got))
}

// TestCloseWriteTCP: CloseWrite reaches the TCP connection: the peer reads
// EOF and can still answer.
func TestCloseWriteTCP(t *testing.T) {
	l := rpctest.Listen(t)
	n := Script()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	client := n.Conn(c)
	defer client.Close()
	server, err := l.Accept()
	require.NoError(t, err)
	defer server.Close()
	require.NoError(t, client.SetDeadline(time.Now().Add(rpctest.Backstop)))
	require.NoError(t, server.SetDeadline(time.Now().Add(rpctest.Backstop)))

	_, err = client.Write([]byte("request"))
	require.NoError(t, err)
	cw, ok := client.(interface{ CloseWrite() error })
	require.True(t, ok, "the wrapper has CloseWrite")
	require.NoError(t, cw.CloseWrite())
	got, err := io.ReadAll(server)
	require.NoError(t, err)
	assert.Equal(t, "request", string(got), "then EOF")
	_, err = server.Write([]byte("answer"))
	require.NoError(t, err)
	require.NoError(t, server.Close())
	got, err = io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "answer", string(got), "the other way still works")

	a, b := net.Pipe()
	defer b.Close()
	piped := n.Conn(a)
	defer piped.Close()
	assert.Error(t, piped.(interface{ CloseWrite() error }).CloseWrite(), "net.Pipe has no CloseWrite")
}

// TestLoseAnswerAfter lets After writes through, a greeting's answer for
// one, and loses the next answer.
func TestLoseAnswerAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := Script(Fault{Kind: LoseAnswer, After: 1})
		client, server := net.Pipe()
		defer client.Close()
		s := n.Conn(server)
		go func() {
			buf := make([]byte, 8)
			for {
				k, err := s.Read(buf)
				if err != nil {
					return
				}
				if _, err := s.Write(buf[:k]); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 8)
		_, err := client.Write([]byte("hello"))
		require.NoError(t, err)
		k, err := client.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(buf[:k]), "the first answer goes through")
		_, err = client.Write([]byte("call"))
		require.NoError(t, err)
		_, err = client.Read(buf)
		assert.ErrorIs(t, err, io.EOF, "the second answer is lost, and the connection closed")
		assert.Equal(t, map[Kind]int{LoseAnswer: 1}, n.Fired())
		assert.Equal(t, "lose the answer after 1 writes", Fault{Kind: LoseAnswer, After: 1}.String())
	})
}
