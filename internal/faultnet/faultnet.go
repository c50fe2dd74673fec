// Package faultnet is one of the course's instruments, not a lesson: a
// network that fails on purpose. It wraps a net.Conn or a net.Listener, real
// TCP or net.Pipe, and gives each connection a fault: cut mid-frame, lose the
// answer, delay every write, stall like a half-open peer, or reset. Faults are
// seeded and deterministic, as in MIT 6.824's labrpc: the same seed and the
// same order of wrapped connections give the same faults, so a failing seed
// can be replayed.
//
//	spec, _ := faultnet.ParseSpec("lose-answer=0.05,cut=0.01,seed=7")
//	fn := faultnet.New(spec)
//	l = fn.Listener(l) // every accepted connection may fail
//
// A Net can also cut every wrapped connection off at once (Partition) and let
// the held bytes flow again (Heal). Every wait honours the connection's
// deadlines and Close, and is a channel or timer wait, so the package works
// inside a testing/synctest bubble on its fake clock.
package faultnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is what goes wrong with a connection.
type Kind uint8

const (
	// None: the connection works (it still stops during a Partition).
	None Kind = iota
	// Cut: once the connection has written After bytes, it is closed; the
	// rest of the write that crossed After is lost, mid-frame. (Cut, Stall
	// and Reset fire on the first Write that would go past After bytes: a
	// Write that ends exactly at After succeeds.)
	Cut
	// LoseAnswer: the connection reads normally; once After writes have
	// gone through, its first Write after a Read returned data closes the
	// connection instead of writing. Wrap the server side: the request
	// arrived and ran, its answer is lost. (After lets a protocol's first
	// answers through, a greeting's for one: New draws it from 0 to 3.)
	LoseAnswer
	// Delay: every Write first waits Fault.Delay.
	Delay
	// Stall: once the connection has written After bytes, writes succeed and
	// go nowhere, and reads deliver nothing (they read and drop what
	// arrives, so deadlines and Close still end them). Nothing errors: the
	// peer is half-open.
	Stall
	// Reset: once the connection has written After bytes, it is reset: a
	// connection with a SetLinger method (*net.TCPConn) closes with
	// SetLinger(0), so the peer sees "connection reset by peer"; any other
	// connection just closes.
	Reset
)

var kindNames = [...]string{
	None:       "none",
	Cut:        "cut",
	LoseAnswer: "lose-answer",
	Delay:      "delay",
	Stall:      "stall",
	Reset:      "reset",
}

// String returns the kind's name as a Spec spells it: "none", "cut",
// "lose-answer", "delay", "stall" or "reset".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Fault is the fault one connection gets.
type Fault struct {
	Kind  Kind
	After int           // Cut, Stall, Reset: the bytes written before it fires; LoseAnswer: the writes let through first
	Delay time.Duration // Delay: the pause before each write
}

// String says what the fault does, in a few words: "cut after 30 bytes",
// "lose the answer", "delay each write 10ms".
func (f Fault) String() string {
	switch f.Kind {
	case None:
		return "no fault"
	case Cut, Stall, Reset:
		return fmt.Sprintf("%s after %d bytes", f.Kind, f.After)
	case LoseAnswer:
		if f.After > 0 {
			return fmt.Sprintf("lose the answer after %d writes", f.After)
		}
		return "lose the answer"
	case Delay:
		return "delay each write " + f.Delay.String()
	}
	return f.Kind.String()
}

// Spec says how often each fault happens: each rate is the probability that
// a connection gets that fault; the rest of the time it gets None.
type Spec struct {
	Seed                                 uint64
	Cut, LoseAnswer, Delay, Stall, Reset float64       // each in [0, 1], and their sum at most 1
	DelayBy                              time.Duration // Delay's pause; 0 means 10ms
	MaxAfter                             int           // After is drawn from [0, MaxAfter); 0 means 64
}

const (
	defaultDelayBy  = 10 * time.Millisecond
	defaultMaxAfter = 64
)

// specKeys are the keys of a spec, in the order String writes them.
var specKeys = []string{"cut", "lose-answer", "delay", "stall", "reset", "delay-by", "max-after", "seed"}

// rates returns the address of each rate field, by its key.
func (s *Spec) rates() map[string]*float64 {
	return map[string]*float64{
		"cut":         &s.Cut,
		"lose-answer": &s.LoseAnswer,
		"delay":       &s.Delay,
		"stall":       &s.Stall,
		"reset":       &s.Reset,
	}
}

// ParseSpec parses a spec such as "lose-answer=0.05,cut=0.01,seed=7", the
// form of a -faults flag. The keys are cut, lose-answer, delay, stall and
// reset (rates), delay-by (a duration such as 20ms), max-after (bytes) and
// seed; each may appear once. "" is the zero Spec: no faults. An error names
// the item it could not take.
func ParseSpec(s string) (Spec, error) {
	var spec Spec
	if strings.TrimSpace(s) == "" {
		return spec, nil
	}
	seen := map[string]bool{}
	rates := spec.rates()
	for item := range strings.SplitSeq(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		bad := func(why string) (Spec, error) {
			return Spec{}, fmt.Errorf("faultnet: spec item %q: %s", item, why)
		}
		if !ok {
			return bad("want key=value")
		}
		if seen[key] {
			return bad("key given twice")
		}
		seen[key] = true
		switch key {
		case "seed":
			seed, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return bad("seed is not a whole number")
			}
			spec.Seed = seed
		case "delay-by":
			d, err := time.ParseDuration(value)
			if err != nil || d < 0 {
				return bad("delay-by is not a duration such as 20ms")
			}
			spec.DelayBy = d
		case "max-after":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				return bad("max-after is not a number of bytes")
			}
			spec.MaxAfter = n
		default:
			rate, known := rates[key]
			if !known {
				return bad("unknown key (want " + strings.Join(specKeys, ", ") + ")")
			}
			f, err := strconv.ParseFloat(value, 64)
			if err != nil || !(f >= 0 && f <= 1) {
				return bad("rate is not a number in [0, 1]")
			}
			*rate = f
		}
	}
	if err := spec.check(); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

// check reports what is wrong with s, or nil.
func (s Spec) check() error {
	sum := 0.0
	for _, key := range specKeys[:5] {
		r := *s.rates()[key]
		if !(r >= 0 && r <= 1) {
			return fmt.Errorf("faultnet: spec %s=%v: rate is not in [0, 1]", key, r)
		}
		sum += r
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("faultnet: spec %q: the rates add up to %v, more than 1", s.String(), sum)
	}
	if s.DelayBy < 0 {
		return fmt.Errorf("faultnet: spec delay-by=%v: negative", s.DelayBy)
	}
	if s.MaxAfter < 0 {
		return fmt.Errorf("faultnet: spec max-after=%d: negative", s.MaxAfter)
	}
	return nil
}

// String formats s as ParseSpec reads it, keys in a fixed order (cut,
// lose-answer, delay, stall, reset, delay-by, max-after, seed) and zero
// fields left out: ParseSpec(s.String()) == s.
func (s Spec) String() string {
	var items []string
	rates := s.rates()
	for _, key := range specKeys[:5] {
		if r := *rates[key]; r != 0 {
			items = append(items, key+"="+strconv.FormatFloat(r, 'g', -1, 64))
		}
	}
	if s.DelayBy != 0 {
		items = append(items, "delay-by="+s.DelayBy.String())
	}
	if s.MaxAfter != 0 {
		items = append(items, "max-after="+strconv.Itoa(s.MaxAfter))
	}
	if s.Seed != 0 {
		items = append(items, "seed="+strconv.FormatUint(s.Seed, 10))
	}
	return strings.Join(items, ",")
}

// Net is one source of faults. It numbers the connections it wraps 0, 1, 2,
// ... in the order they are wrapped, and connection i's fault depends only on
// i and the Net's spec or script. Its methods, and the connections it wraps,
// are safe for use by many goroutines.
type Net struct {
	spec     Spec
	script   []Fault
	scripted bool

	mu      sync.Mutex              // protects onFault, next, fired, healed
	onFault func(conn int, f Fault) // called as a fault fires
	next    int                     // the number the next wrapped connection gets
	fired   map[Kind]int            // faults fired so far, by kind
	healed  chan struct{}           // during a Partition, closed by Heal; nil otherwise
}

// New returns a Net whose connection i gets its fault from a PCG generator
// (math/rand/v2) seeded with (spec.Seed, i). It panics if spec is one that
// ParseSpec would reject.
func New(spec Spec) *Net {
	if err := spec.check(); err != nil {
		panic(err)
	}
	return &Net{spec: spec, fired: map[Kind]int{}}
}

// Script returns a Net whose connection i gets faults[i % len(faults)], so
// Script(Fault{}, Fault{}, Fault{Kind: LoseAnswer}) loses every third
// answer. With no faults, every connection gets None.
func Script(faults ...Fault) *Net {
	return &Net{script: faults, scripted: true, fired: map[Kind]int{}}
}

// faultFor returns connection i's fault.
func (n *Net) faultFor(i int) Fault {
	if n.scripted {
		if len(n.script) == 0 {
			return Fault{}
		}
		return n.script[i%len(n.script)]
	}
	s := n.spec
	r := rand.New(rand.NewPCG(s.Seed, uint64(i)))
	u := r.Float64()
	maxAfter := orDefault(s.MaxAfter, defaultMaxAfter)
	after := r.IntN(maxAfter)
	cum := 0.0
	for _, f := range []struct {
		kind Kind
		rate float64
	}{{Cut, s.Cut}, {LoseAnswer, s.LoseAnswer}, {Delay, s.Delay}, {Stall, s.Stall}, {Reset, s.Reset}} {
		cum += f.rate
		if u < cum {
			switch f.kind {
			case Delay:
				return Fault{Kind: Delay, Delay: orDefault(s.DelayBy, defaultDelayBy)}
			case LoseAnswer:
				return Fault{Kind: LoseAnswer, After: after % 4}
			}
			return Fault{Kind: f.kind, After: after}
		}
	}
	return Fault{}
}

// cmp returns v, or def if v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// OnFault sets a function called each time a fault fires (not when it is
// given to a connection), with the connection's number and its fault. Set it
// before the Net wraps its first connection: faults that fire before it is
// set are counted by Fired but not reported. f runs on the goroutine whose
// Read or Write fired the fault, so it must not block for long.
func (n *Net) OnFault(f func(conn int, f Fault)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.onFault = f
}

// Fired returns how many faults of each kind have fired so far. A fault
// fires once per connection, when it first acts.
func (n *Net) Fired() map[Kind]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	fired := make(map[Kind]int, len(n.fired))
	for k, v := range n.fired {
		fired[k] = v
	}
	return fired
}

func (n *Net) fire(id int, f Fault) {
	n.mu.Lock()
	n.fired[f.Kind]++
	onFault := n.onFault
	n.mu.Unlock()
	if onFault != nil {
		onFault(id, f)
	}
}

// Partition cuts every connection of the Net off, from now until Heal: their
// Writes block and their Reads deliver nothing. Bytes are held, not lost, as
// TCP would retransmit them, and flow again on Heal. A deadline or Close
// still ends a blocked call. Dial waits for Heal too. A Write already
// handed to the wrapped connection when Partition is called is not stopped;
// the peer's wrapped Read holds its bytes. Under testing/synctest, call
// Partition inside the bubble, so that the waits are durably blocking.
func (n *Net) Partition() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.healed == nil {
		n.healed = make(chan struct{})
	}
}

// Heal ends a Partition; it does nothing if there is none.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.healed != nil {
		close(n.healed)
		n.healed = nil
	}
}

// closedChan is a channel that is always ready.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// connected returns a channel that is ready when the Net is not partitioned.
func (n *Net) connected() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.healed == nil {
		return closedChan
	}
	return n.healed
}

// partitioned reports whether a Partition is in force.
func (n *Net) partitioned() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.healed != nil
}

// Conn wraps c as the Net's next connection. The result has a CloseWrite
// method, which forwards to c's or fails if c has none. Once a fault or
// Close has closed it, its Read and Write return errors that wrap
// net.ErrClosed, whatever c says (net.Pipe says io.ErrClosedPipe); a
// deadline that passes during one of its own waits returns an error that
// wraps os.ErrDeadlineExceeded, as c's would.
func (n *Net) Conn(c net.Conn) net.Conn {
	n.mu.Lock()
	id := n.next
	n.next++
	n.mu.Unlock()
	return &conn{
		Conn:   c,
		net:    n,
		id:     id,
		fault:  n.faultFor(id),
		closed: make(chan struct{}),
		rdl:    deadline{changed: make(chan struct{})},
		wdl:    deadline{changed: make(chan struct{})},
	}
}

// Listener wraps l so that every connection it accepts is wrapped by Conn,
// numbered in the order Accept returns them.
func (n *Net) Listener(l net.Listener) net.Listener {
	return &listener{Listener: l, net: n}
}

// Dial waits until the Net is not partitioned, or returns ctx's error, then
// dials with dial and wraps the connection it returns.
func (n *Net) Dial(ctx context.Context, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	select {
	case <-n.connected():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	return n.Conn(c), nil
}

type listener struct {
	net.Listener
	net *Net
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.net.Conn(c), nil
}

// deadline is one of a conn's deadlines, as its wrapper's waits see it.
type deadline struct {
	t       time.Time
	changed chan struct{} // closed and replaced each time t is set
}

// conn is a connection that fails as its fault says. A fault fires once.
type conn struct {
	net.Conn
	net   *Net
	id    int
	fault Fault

	closed    chan struct{} // closed by the first Close, by the user or a fault
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex // protects the fields below
	rdl, wdl deadline
	written  int    // bytes allowed out so far (Cut, Stall, Reset)
	fired    bool   // the fault has fired
	stalled  bool   // a Stall has fired
	readData bool   // a Read has returned data (LoseAnswer)
	writes   int    // writes let through so far (LoseAnswer)
	held     []byte // bytes read during a Partition, for the Reads after Heal
}

func (c *conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// wait blocks until ready or pause is ready (either may be nil), and returns
// nil; or until the deadline d passes or the conn closes, and returns why. A
// deadline set during the wait counts from then on.
func (c *conn) wait(op string, d *deadline, ready <-chan struct{}, pause <-chan time.Time) error {
	for {
		c.mu.Lock()
		t, changed := d.t, d.changed
		c.mu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if !t.IsZero() {
			left := time.Until(t)
			if left <= 0 {
				return c.opErr(op, os.ErrDeadlineExceeded)
			}
			timer = time.NewTimer(left)
			expired = timer.C
		}
		var err error
		again := false
		select {
		case <-ready:
		case <-pause:
		case <-c.closed:
			err = c.opErr(op, net.ErrClosed)
		case <-expired:
			err = c.opErr(op, os.ErrDeadlineExceeded)
		case <-changed:
			again = true
		}
		if timer != nil {
			timer.Stop()
		}
		if !again {
			return err
		}
	}
}

// fire marks the fault fired and reports it; it returns false if it had
// fired already.
func (c *conn) fire() bool {
	c.mu.Lock()
	already := c.fired
	c.fired = true
	c.mu.Unlock()
	if already {
		return false
	}
	c.net.fire(c.id, c.fault)
	return true
}

func (c *conn) Read(p []byte) (int, error) {
	for {
		if c.isClosed() {
			return 0, c.opErr("read", net.ErrClosed)
		}
		if err := c.wait("read", &c.rdl, c.net.connected(), nil); err != nil {
			return 0, err
		}
		c.mu.Lock()
		if len(c.held) > 0 {
			n := copy(p, c.held)
			c.held = c.held[n:]
			c.readData = true
			c.mu.Unlock()
			return n, nil
		}
		buf := p
		if c.stalled {
			buf = make([]byte, 512) // what a stalled conn reads is dropped
		}
		c.mu.Unlock()
		n, err := c.Conn.Read(buf)
		if err != nil && c.isClosed() {
			return 0, c.opErr("read", net.ErrClosed)
		}
		if n == 0 {
			return 0, err
		}
		c.mu.Lock()
		switch {
		case c.stalled: // before this read or during it: dropped
			n = 0
		case c.net.partitioned() && err == nil: // held until Heal
			c.held = append(c.held, p[:n]...)
			n = 0
		default:
			c.readData = true
		}
		c.mu.Unlock()
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (c *conn) Write(p []byte) (int, error) {
	if c.isClosed() {
		return 0, c.opErr("write", net.ErrClosed)
	}
	if c.fault.Kind == Delay {
		c.fire()
		pause := time.NewTimer(c.fault.Delay)
		err := c.wait("write", &c.wdl, nil, pause.C)
		pause.Stop()
		if err != nil {
			return 0, err
		}
	}
	if err := c.wait("write", &c.wdl, c.net.connected(), nil); err != nil {
		return 0, err
	}

	switch c.fault.Kind {
	case LoseAnswer:
		c.mu.Lock()
		lose := c.readData && !c.fired && c.writes >= c.fault.After
		c.writes++
		c.mu.Unlock()
		if lose && c.fire() {
			c.close()
			return 0, c.opErr("write", net.ErrClosed)
		}
	case Cut, Stall, Reset:
		c.mu.Lock()
		// Once the fault has fired, no byte is allowed: a stalled conn's
		// writes go nowhere, a cut or reset one is closed.
		allowed := min(len(p), max(c.fault.After-c.written, 0))
		c.written += allowed
		fires := allowed < len(p)
		if fires && c.fault.Kind == Stall {
			c.stalled = true // from now on, other writes go nowhere too
		}
		c.mu.Unlock()
		if !fires {
			break
		}
		n := 0
		if allowed > 0 { // net.Pipe's empty Write waits for a Read
			var err error
			if n, err = c.Conn.Write(p[:allowed]); err != nil {
				return n, c.closedOr("write", err)
			}
		}
		first := c.fire()
		switch {
		case c.fault.Kind == Stall:
			return len(p), nil
		case !first:
			return n, c.opErr("write", net.ErrClosed)
		case c.fault.Kind == Reset:
			if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
				_ = l.SetLinger(0)
			}
		}
		c.close()
		return n, c.opErr("write", net.ErrClosed)
	}
	n, err := c.Conn.Write(p)
	return n, c.closedOr("write", err)
}

// closedOr returns err, or a net.ErrClosed error if err is there because the
// conn was closed (net.Pipe says io.ErrClosedPipe).
func (c *conn) closedOr(op string, err error) error {
	if err != nil && c.isClosed() {
		return c.opErr(op, net.ErrClosed)
	}
	return err
}

func (c *conn) close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// Close closes the connection. Closing it again, or after a fault closed it,
// returns a net.ErrClosed error.
func (c *conn) Close() error {
	if c.isClosed() {
		return c.opErr("close", net.ErrClosed)
	}
	return c.close()
}

// CloseWrite shuts down the writing side, as *net.TCPConn's does, if the
// wrapped connection has a CloseWrite method; otherwise it returns an error.
// A stalled connection's CloseWrite goes nowhere, as its writes do.
func (c *conn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return c.opErr("close", errors.New("faultnet: the wrapped connection has no CloseWrite"))
	}
	c.mu.Lock()
	stalled := c.stalled
	c.mu.Unlock()
	if stalled {
		return nil
	}
	return cw.CloseWrite()
}

func (c *conn) SetDeadline(t time.Time) error {
	c.setDeadline(&c.rdl, t)
	c.setDeadline(&c.wdl, t)
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.setDeadline(&c.rdl, t)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.setDeadline(&c.wdl, t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) setDeadline(d *deadline, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d.t = t
	close(d.changed)
	d.changed = make(chan struct{})
}
