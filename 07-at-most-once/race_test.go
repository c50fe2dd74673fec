//go:build race

package atmostonce

// Under the race detector, sync.Pool drops a quarter of what it is given,
// at random, so the tests of what the pools save allow for that.
func init() { raceEnabled = true }
