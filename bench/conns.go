package bench

import (
	"net"
	"sync"
)

// serveConns accepts connections on l and runs serve on each, in a goroutine
// of its own, until stop is called. stop closes the listener and every open
// connection, then waits for the goroutines: the peers that have no
// Shutdown of their own (the floor, net/rpc) stop this way.
func serveConns(l net.Listener, serve func(net.Conn)) (stop func() error) {
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // the listener is closed: stop was called
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				serve(c)
			})
		}
	})
	return func() error {
		err := l.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		return err
	}
}
