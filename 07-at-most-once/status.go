package atmostonce

import (
	"errors"
	"fmt"
	"strings"
)

// Code says what kind of failure ended a call. The names and the numbers
// are gRPC's status codes, for the failures this stage has; a Code is an
// error too, so that errors.Is(err, DeadlineExceeded) asks a call's error
// for its code.
type Code uint8

// The codes, with gRPC's numbers.
const (
	OK                Code = 0  // not a failure: the call returned its result
	Canceled          Code = 1  // the caller gave up
	Unknown           Code = 2  // the function returned an error of its own, as gRPC reports a handler's plain error
	InvalidArgument   Code = 3  // the arguments do not fit the function
	DeadlineExceeded  Code = 4  // the caller's deadline passed
	ResourceExhausted Code = 8  // a limit was reached: a request too large, too many calls of one client, the server's table full
	Aborted           Code = 10 // the server no longer knows whether an earlier attempt of the call ran
	Unimplemented     Code = 12 // no function has that name
	Internal          Code = 13 // the stream broke a rule of the wire, and the connection is closed
	Unavailable       Code = 14 // the server could not be reached, or is shutting down
)

var codeNames = map[Code]string{
	OK: "ok", Canceled: "canceled", Unknown: "unknown", InvalidArgument: "invalid argument",
	DeadlineExceeded: "deadline exceeded", ResourceExhausted: "resource exhausted", Aborted: "aborted",
	Unimplemented: "unimplemented", Internal: "internal", Unavailable: "unavailable",
}

// String writes the code's name in lower case, with spaces: "deadline
// exceeded".
func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// Error makes a Code an error, for errors.Is: see Error.Is.
func (c Code) Error() string { return c.String() }

// Outcome says whether a call that failed ran on the server.
type Outcome uint8

// The three outcomes of a call that failed.
const (
	// NotRun: the server refused the call before running it, or it was
	// never sent. It is safe to make it again.
	NotRun Outcome = iota + 1
	// Ran: the function ran, and failed; its error is the answer.
	Ran
	// OutcomeUnknown: nobody can say whether the function ran. The answer was
	// lost, and no attempt could settle it.
	OutcomeUnknown
)

var outcomeNames = map[Outcome]string{NotRun: "did not run", Ran: "ran", OutcomeUnknown: "outcome unknown"}

func (o Outcome) String() string {
	if name, ok := outcomeNames[o]; ok {
		return name
	}
	return fmt.Sprintf("outcome %d", uint8(o))
}

// The three outcomes, as errors for errors.Is: errors.Is(err, ErrNotRun)
// reports that the call failed without running, and may be made again.
var (
	ErrNotRun         = errors.New("the call did not run")
	ErrRan            = errors.New("the call ran, and failed")
	ErrOutcomeUnknown = errors.New("the call may or may not have run")
)

// Error is how every call fails, whoever saw it fail: the server, in its
// answer, or the client, which lost the connection, gave up or was closed.
// errors.Is matches it against its Code, its Outcome (ErrNotRun, ErrRan,
// ErrOutcomeUnknown) and its cause: a call given up at its deadline is
// errors.Is(err, DeadlineExceeded), errors.Is(err, ErrOutcomeUnknown) if
// it had been sent, and errors.Is(err, context.DeadlineExceeded).
type Error struct {
	Code    Code
	Outcome Outcome
	Message string // what went wrong, as the server or the client said it
	Cause   error  // what the client saw, if it saw the failure itself: a network error, ctx's error; nil in an answer
}

// Error writes the code and the outcome, the message, and the cause
// unless the message ends with it already: "deadline exceeded (outcome
// unknown): given up: context deadline exceeded".
func (e *Error) Error() string {
	s := e.Code.String() + " (" + e.Outcome.String() + ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Cause != nil && !strings.HasSuffix(e.Message, e.Cause.Error()) {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is the error's Code, or the sentinel of its
// Outcome.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotRun:
		return e.Outcome == NotRun
	case ErrRan:
		return e.Outcome == Ran
	case ErrOutcomeUnknown:
		return e.Outcome == OutcomeUnknown
	}
	code, ok := target.(Code)
	return ok && code == e.Code
}

// failure returns an *Error with a message made as fmt.Sprintf makes it.
func failure(code Code, outcome Outcome, format string, args ...any) *Error {
	return &Error{Code: code, Outcome: outcome, Message: fmt.Sprintf(format, args...)}
}

// asError returns err as an *Error: itself if it is one, or else the
// function's own error, which ran.
func asError(err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return &Error{Code: Unknown, Outcome: Ran, Message: err.Error()}
}
