package atmostonce

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
)

// RetryPolicy says when a Client sends a call again. A call whose
// connection broke before its answer came is always a candidate: the
// server's table makes sending it again safe. A call the server refused
// before running it is one if its Code is in Codes, after a backoff. Either
// way the call must have attempts left, its caller must still wait, and
// the retry budget must allow it.
//
// The budget is gRPC's retry throttling (gRFC A6): it starts with
// MaxTokens; a failed attempt takes one token, a call that succeeds gives
// back TokenRatio, and while MaxTokens/2 or fewer are left, no call is sent
// again. So when most calls fail, retries stop, and a failing server is not
// sent several times the calls it cannot answer. One difference: a broken
// connection takes one token, however many calls were lost with it, since
// they failed together and go out again together, on one new connection.
type RetryPolicy struct {
	MaxAttempts int     // attempts per call, the first included; 1 sends every call once
	Backoff     Backoff // between the dials after a failure, and before resending a refused call
	Codes       []Code  // the refusals sent again
	MaxTokens   float64 // the retry budget
	TokenRatio  float64 // what a success gives back
}

// DefaultRetryPolicy is the policy of a Client unless WithRetryPolicy
// says otherwise: gRPC's limit of 5 attempts, gRFC A6's example budget,
// a backoff from 100 ms up to 10 s, and only Unavailable retried, as
// gRPC's guidance has it: ResourceExhausted may be a request too large
// ever to be taken, or a table that stays full, and the caller, which
// hears it did not run, decides.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts: 5,
	Backoff:     Backoff{Base: 100 * time.Millisecond, Cap: 10 * time.Second},
	Codes:       []Code{Unavailable},
	MaxTokens:   10,
	TokenRatio:  0.1,
}

// withDefaults fills the zero fields of p from DefaultRetryPolicy.
func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	setZero(&p.MaxAttempts, d.MaxAttempts)
	setZero(&p.Backoff.Base, d.Backoff.Base)
	setZero(&p.Backoff.Cap, d.Backoff.Cap)
	setZero(&p.MaxTokens, d.MaxTokens)
	setZero(&p.TokenRatio, d.TokenRatio)
	if p.Codes == nil {
		p.Codes = d.Codes
	}
	return p
}

// retries reports whether a refusal with code is sent again.
func (p RetryPolicy) retries(code Code) bool {
	return slices.Contains(p.Codes, code)
}

// Backoff is exponential backoff with full jitter, as the AWS
// Architecture Blog's "Exponential Backoff And Jitter" names it: before
// try n (from 0), wait a random time from 0 up to Base·2ⁿ, or up to Cap
// once that is larger. The randomness spreads clients that failed
// together, so that they do not all come back at the same moment.
type Backoff struct {
	Base time.Duration
	Cap  time.Duration
}

// wait returns how long to wait before try n.
func (b Backoff) wait(rng *rand.Rand, n int) time.Duration {
	ceiling := b.Cap
	if n < 62 && b.Base<<n > 0 && b.Base<<n < b.Cap {
		ceiling = b.Base << n
	}
	return time.Duration(rng.Int64N(int64(ceiling) + 1))
}

// EventKind names what an Event reports.
type EventKind uint8

// The events a Client reports through WithEvents.
const (
	Reconnecting EventKind = iota + 1 // the connection broke, or a dial failed: the Client dials again after Wait
	Retrying                          // call ID is sent again, as attempt Attempt, after Wait
	Throttled                         // call ID is not sent again: the retry budget is spent
)

func (k EventKind) String() string {
	switch k {
	case Reconnecting:
		return "reconnecting"
	case Retrying:
		return "retrying"
	case Throttled:
		return "throttled"
	}
	return "event"
}

// Event is something a Client did to survive a failure.
type Event struct {
	Kind    EventKind
	ID      uint64        // the call (Retrying, Throttled)
	Attempt int           // the attempt to come (Retrying), or the last made (Throttled)
	Wait    time.Duration // the backoff before it (Reconnecting, Retrying)
	Err     error         // why (Reconnecting)
}

// clientCounters count what a Client did; Stats reads them.
type clientCounters struct {
	calls, attempts, retries, throttled, unknown, connections atomic.Int64
}

// Stats is what a Client has done so far.
type Stats struct {
	Calls       int64 // calls registered
	Attempts    int64 // requests sent: the first attempts and the retries
	Retries     int64 // attempts after the first
	Throttled   int64 // retries the budget refused
	Unknown     int64 // calls that ended with their outcome unknown
	Connections int64 // connections opened
}

// Stats returns what the Client has done so far.
func (c *Client) Stats() Stats {
	return Stats{
		Calls:       c.stats.calls.Load(),
		Attempts:    c.stats.attempts.Load(),
		Retries:     c.stats.retries.Load(),
		Throttled:   c.stats.throttled.Load(),
		Unknown:     c.stats.unknown.Load(),
		Connections: c.stats.connections.Load(),
	}
}
