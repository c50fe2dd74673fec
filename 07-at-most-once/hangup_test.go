package atmostonce

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bigSendBuffers is a listener whose connections have a kernel send buffer
// larger than any answer of these tests, so that the server's write of an
// answer returns while the client has read almost none of it: the answer
// then waits in the server's kernel, where a reset destroys it.
type bigSendBuffers struct{ net.Listener }

func (l bigSendBuffers) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		err = conn.(*net.TCPConn).SetWriteBuffer(1 << 20)
	}
	return conn, err
}

// slowReader dials addr with a kernel receive buffer of 64 KiB, the
// default of Linux, set so that it is the same everywhere: until the client
// reads, the server can send it at most that much, and the rest of an
// answer of bigEcho bytes waits on the server's side. Its decoder takes
// answers up to maxBigEcho.
func slowReader(t *testing.T, addr string) (net.Conn, *decoder) {
	t.Helper()
	conn, _ := rawConn(t, addr)
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(64<<10))
	return conn, newDecoder(conn, maxBigEcho)
}

// bigEcho is the size of the answer these tests protect: four times what
// a slowReader's kernel takes before it reads, and less than a send buffer
// of the smallest largest size Linux allows by default (2 × 208 KiB), so
// that the server's write of it returns at once. maxBigEcho is the
// MaxRequestBytes that lets it through.
const bigEcho, maxBigEcho = 256 << 10, 512 << 10

// TestShutdownHangsUpPolitely writes an answer of 256 KiB after Shutdown
// began, on a connection whose client has sent its next request after the
// server stopped reading, and reads nothing until Shutdown has returned.
// A server that closed at once, with that request unread, would make the
// kernel send a reset and drop what it had not sent of the answer: the
// client would read a few KiB and then "connection reset by peer". The
// server hangs up politely instead: it closes its writing side, reads and
// drops what the client sends, within one deadline, and then closes.
func TestShutdownHangsUpPolitely(t *testing.T) {
	srv := NewDemoServer(Service{})
	srv.MaxRequestBytes = maxBigEcho
	entered, release := holdCalls(srv)
	var written atomic.Int64
	srv.answerWritten = func(uint64) { written.Add(1) }
	l := watch(bigSendBuffers{rpctest.Listen(t)})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	conn, answers := slowReader(t, l.Addr().String())
	big := strings.Repeat("x", bigEcho)
	frames := encodeFrames(t, withID(call(t, "echo", big), 1), withID(call(t, "echo", "next"), 2))
	write(t, conn, frames[0])
	<-entered
	server := <-l.conns

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), rpctest.Backstop)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	<-served                  // Shutdown has begun
	nextTimeout(t, server)    // the server's reader has stopped, at Shutdown's deadline
	write(t, conn, frames[1]) // so this request stays unread
	release()
	require.NoError(t, <-shutdown)
	require.Equal(t, int64(1), written.Load(), "answers written when Shutdown returned")

	assert.Equal(t, answerTo(1, strAnswer(big)), nextAnswer(t, answers), "the answer written before the close")
	assert.ErrorIs(t, answers.decode(&Response{}), io.EOF, "then the end of the stream, not a reset")
}

// TestIdleTimeoutHangsUpPolitely lets a connection go idle after an answer
// of 256 KiB that its client has not read, and has the client send a
// request just after the server stopped reading. A server that closed at
// once would leave that request to arrive at a socket it had closed, and
// the kernel would answer it with a reset, dropping what it had not sent
// of the answer. The server hangs up politely: it reads and drops the
// request, and the client reads the whole answer, then the end.
func TestIdleTimeoutHangsUpPolitely(t *testing.T) {
	srv := NewDemoServer(Service{})
	srv.FirstRequestTimeout = time.Hour
	srv.IdleTimeout = 50 * time.Millisecond
	srv.MaxRequestBytes = maxBigEcho
	srv.linger = rpctest.Backstop // the client ends the hang-up, by closing its side
	l := watch(bigSendBuffers{rpctest.Listen(t)})
	conn, answers := slowReader(t, serve(t, srv, l))
	big := strings.Repeat("x", bigEcho)
	frames := encodeFrames(t, withID(call(t, "echo", big), 1), withID(call(t, "echo", "late"), 2))
	write(t, conn, frames[0])
	ending(t, <-l.conns)      // idle since its answer: the server has stopped reading
	write(t, conn, frames[1]) // so this request is not read
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())

	assert.Equal(t, answerTo(1, strAnswer(big)), nextAnswer(t, answers), "the answer written before the close")
	assert.ErrorIs(t, answers.decode(&Response{}), io.EOF, "then the end of the stream, not a reset")
}
