// Package wiretap is one of the course's instruments, not a lesson: it prints
// the bytes that cross a connection, so that every lesson can show its wire
// protocol as it really is. Every stage uses the same Tap.
package wiretap

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Tap prints the bytes that cross a connection, exactly as they cross it.
// Every stage's client takes one through WithTap, and its -trace flag puts
// one on every connection the client opens.
//
// Bytes that go the same way one after another are printed as one block,
// however many reads or writes carried them, so a transcript does not depend
// on how the network happened to cut the stream:
//
//	=== conn 1 open to 127.0.0.1:8003
//	--> conn 1 sent 5 bytes
//	    hello␊
//	<-- conn 1 received 4 bytes
//	    00000000  00 01 02 03                                       |....|
//
// Text is shown line by line, each line ending with a visible ␍␊ or ␊ for the
// bytes "\r\n" or "\n"; a line with no mark had no line ending. Anything that
// is not printable UTF-8 is shown as a hex dump.
type Tap struct {
	mu    sync.Mutex   // protects w, conns, last, buf
	w     io.Writer    // where the transcript goes
	conns int          // connections opened so far
	last  tapDirection // which connection and way buf holds
	buf   []byte       // bytes seen in direction last, not printed yet
}

// New returns a Tap that writes its transcript to w.
func New(w io.Writer) *Tap {
	return &Tap{w: w}
}

// tapShowMax is how many bytes of one block a Tap prints; the rest of the
// block is counted but not shown.
const tapShowMax = 512

type tapDirection struct {
	conn int
	sent bool
}

// Conn wraps c so that every byte read from it or written to it is printed.
func (t *Tap) Conn(c net.Conn) net.Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	t.conns++
	fmt.Fprintf(t.w, "=== conn %d open to %s\n", t.conns, c.RemoteAddr())
	return &tappedConn{Conn: c, tap: t, id: t.conns}
}

// Flush prints the bytes recorded and not printed yet.
func (t *Tap) Flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
}

func (t *Tap) record(d tapDirection, p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d != t.last {
		t.flushLocked()
		t.last = d
	}
	t.buf = append(t.buf, p...)
}

// unsent takes back the last k bytes recorded in direction d, which a failed
// write did not send after all, and says why. If they have been printed
// already, the note says so.
func (t *Tap) unsent(d tapDirection, k int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == d && len(t.buf) >= k {
		t.buf = t.buf[:len(t.buf)-k]
		t.flushLocked()
		fmt.Fprintf(t.w, "=== conn %d write of %d more bytes failed: %v\n", d.conn, k, err)
		return
	}
	t.flushLocked()
	fmt.Fprintf(t.w, "=== conn %d the last %d bytes shown as sent were not: %v\n", d.conn, k, err)
}

// note prints an event on connection id, after the bytes recorded before it.
func (t *Tap) note(id int, event string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	fmt.Fprintf(t.w, "=== conn %d %s\n", id, event)
}

func (t *Tap) flushLocked() {
	if len(t.buf) == 0 {
		return
	}
	arrow, verb := "<--", "received"
	if t.last.sent {
		arrow, verb = "-->", "sent"
	}
	fmt.Fprintf(t.w, "%s conn %d %s %d bytes\n", arrow, t.last.conn, verb, len(t.buf))
	shown := t.buf[:min(len(t.buf), tapShowMax)]
	if isText(shown) {
		writeText(t.w, shown)
	} else {
		writeHex(t.w, shown)
	}
	if hidden := len(t.buf) - len(shown); hidden > 0 {
		fmt.Fprintf(t.w, "    ... %d more bytes not shown\n", hidden)
	}
	t.buf = t.buf[:0]
}

// isText reports whether p reads well as text: valid UTF-8 whose runes are
// printable, tabs or line endings. A block cut by tapShowMax in the middle of
// a rune is still text.
func isText(p []byte) bool {
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			return len(p) < utf8.UTFMax && !utf8.FullRune(p)
		}
		if !unicode.IsPrint(r) && r != '\t' && r != '\r' && r != '\n' {
			return false
		}
		p = p[size:]
	}
	return true
}

func writeText(w io.Writer, p []byte) {
	for len(p) > 0 {
		line, rest, found := bytes.Cut(p, []byte("\n"))
		end := ""
		if found {
			end = "␊"
			if l, ok := bytes.CutSuffix(line, []byte("\r")); ok {
				line, end = l, "␍␊"
			}
		}
		fmt.Fprintf(w, "    %s%s\n", line, end)
		p = rest
	}
}

func writeHex(w io.Writer, p []byte) {
	dump := strings.TrimSuffix(hex.Dump(p), "\n")
	for line := range strings.SplitSeq(dump, "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
}

// tappedConn is a net.Conn that reports what it reads and writes to its Tap.
type tappedConn struct {
	net.Conn
	tap   *Tap
	id    int
	close sync.Once // reports the first Close only
}

func (c *tappedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.tap.record(tapDirection{conn: c.id}, p[:n])
	}
	return n, err
}

// Write records p before writing it: once the bytes are out, the answer can
// arrive, and the transcript must show the question first.
func (c *tappedConn) Write(p []byte) (int, error) {
	c.tap.record(tapDirection{conn: c.id, sent: true}, p)
	n, err := c.Conn.Write(p)
	if n < len(p) {
		c.tap.unsent(tapDirection{conn: c.id, sent: true}, len(p)-n, err)
	}
	return n, err
}

func (c *tappedConn) Close() error {
	c.close.Do(func() { c.tap.note(c.id, "closed by this side") })
	return c.Conn.Close()
}
