//go:build !race

package customproto

// raceEnabled reports whether the tests run with the race detector, under
// which sync.Pool drops one buffer put in four at random.
const raceEnabled = false
