package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// The floor is the least an RPC over TCP can do: a ping-pong of frames, each
// a 4-byte big-endian length and a payload, one goroutine per connection, no
// codec and no names. A request's payload is one byte that says which
// procedure, then its arguments: 'a' and two 8-byte integers, or 'e' and the
// text. An answer's payload is the sum, 8 bytes, or the text.
//
// Nothing in a stage can be faster than this on the same machine: it is the
// cost of the system calls and the loopback, which every system pays.
const (
	floorAdd  = 'a'
	floorEcho = 'e'
	// floorMaxFrame bounds the payload either side reads.
	floorMaxFrame = 1 << 20
)

// Floor returns the raw TCP ping-pong. Its client makes one call at a time
// and must not be shared: a caller that wants to call at the same time as
// another dials a connection of its own.
func Floor() System {
	return System{
		Name:  "floor",
		Serve: func(l net.Listener) func() error { return serveConns(l, serveFloor) },
		Dial: func(ctx context.Context, addr string) (Client, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &floorClient{conn: c, r: bufio.NewReader(c)}, nil
		},
	}
}

// serveFloor answers the frames of one connection until it closes or sends
// something the floor does not understand.
func serveFloor(c net.Conn) {
	r := bufio.NewReader(c)
	var in, out []byte
	for {
		var err error
		in, err = readFrame(r, in)
		if err != nil || len(in) == 0 {
			return
		}
		out = out[:0]
		switch in[0] {
		case floorAdd:
			if len(in) != 17 {
				return
			}
			a := int64(binary.BigEndian.Uint64(in[1:9]))
			b := int64(binary.BigEndian.Uint64(in[9:17]))
			out = binary.BigEndian.AppendUint32(out, 8)
			out = binary.BigEndian.AppendUint64(out, uint64(a+b))
		case floorEcho:
			text := string(in[1:]) // decoded, as every other system does
			out = binary.BigEndian.AppendUint32(out, uint32(len(text)))
			out = append(out, text...)
		default:
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// readFrame reads one frame's payload into buf, growing it if needed.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return buf, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > floorMaxFrame {
		return buf, fmt.Errorf("a frame of %d bytes is over the floor's limit of %d", n, floorMaxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// floorClient is the floor's client: one connection, one call at a time.
type floorClient struct {
	conn net.Conn
	r    *bufio.Reader
	out  []byte
	in   []byte
}

func (c *floorClient) call(req []byte) ([]byte, error) {
	if _, err := c.conn.Write(req); err != nil {
		return nil, err
	}
	var err error
	c.in, err = readFrame(c.r, c.in)
	return c.in, err
}

func (c *floorClient) Add(_ context.Context, a, b int) (int, error) {
	c.out = binary.BigEndian.AppendUint32(c.out[:0], 17)
	c.out = append(c.out, floorAdd)
	c.out = binary.BigEndian.AppendUint64(c.out, uint64(a))
	c.out = binary.BigEndian.AppendUint64(c.out, uint64(b))
	ans, err := c.call(c.out)
	if err != nil {
		return 0, err
	}
	if len(ans) != 8 {
		return 0, errors.New("the floor's answer to add is not 8 bytes")
	}
	return int(int64(binary.BigEndian.Uint64(ans))), nil
}

func (c *floorClient) Echo(_ context.Context, text string) (string, error) {
	c.out = binary.BigEndian.AppendUint32(c.out[:0], uint32(1+len(text)))
	c.out = append(c.out, floorEcho)
	c.out = append(c.out, text...)
	ans, err := c.call(c.out)
	if err != nil {
		return "", err
	}
	return string(ans), nil
}

func (c *floorClient) Close() error { return c.conn.Close() }
