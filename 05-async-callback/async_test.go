package asyncrpc

import (
	"fmt"
	"sync"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// TestManyCallsOneConnection makes 10,000 calls from 256 goroutines over
// one connection, and checks every answer: no answer goes to the wrong call.
func TestManyCallsOneConnection(t *testing.T) {
	c := dial(t, serve(t, NewDemoServer(Service{}), rpctest.Listen(t)))
	const callers, each = 256, 10_000 / 256
	var g errgroup.Group
	for i := range callers {
		g.Go(func() error {
			for j := range each {
				sum, err := c.Add(t.Context(), i, j*1000)
				if err != nil {
					return err
				}
				if sum != i+j*1000 {
					return fmt.Errorf("add(%d, %d) = %d", i, j*1000, sum)
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	assert.Zero(t, c.LateAnswers())
}

// TestAnswersCross holds the first call until the second has been answered:
// the answers come back in the order the calls finish.
func TestAnswersCross(t *testing.T) {
	srv := NewDemoServer(Service{})
	secondWritten := make(chan struct{})
	var once sync.Once
	srv.beforeAnswer = func(req *Request) {
		if req.Func == "echo" && req.Params[0].Str == "first" {
			<-secondWritten
		}
	}
	srv.answerWritten = func(id uint64) {
		if id == 2 {
			once.Do(func() { close(secondWritten) })
		}
	}
	c := dial(t, serve(t, srv, rpctest.Listen(t)))
	first := c.Go(t.Context(), "echo", "first")
	second := c.Go(t.Context(), "echo", "second")
	var order []string
	for range 2 {
		select {
		case call := <-first.Done:
			require.NoError(t, call.Error)
			order = append(order, call.Result.(string))
		case call := <-second.Done:
			require.NoError(t, call.Error)
			order = append(order, call.Result.(string))
		}
	}
	assert.Equal(t, []string{"second", "first"}, order)
}
