//go:build race

package jsontcp

// raceEnabled reports whether the race detector is on. Under it, a
// sync.Pool drops one buffer put in four at random, on purpose, so a test
// that counts on the pool needs a wider bound.
const raceEnabled = true
