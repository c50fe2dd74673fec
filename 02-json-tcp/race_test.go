//go:build race

package jsontcp

// raceEnabled reports whether the race detector is on. Under it, a
// sync.Pool drops some of what it is given at random, on purpose, so a
// test cannot count on the pool.
const raceEnabled = true
