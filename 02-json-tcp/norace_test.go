//go:build !race

package jsontcp

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
