//go:build race

package rpctest

// RaceEnabled reports whether the tests run under the race detector. Under
// it, a sync.Pool drops one buffer put in four at random, on purpose, so a
// test that counts on a pool needs a wider bound.
const RaceEnabled = true
