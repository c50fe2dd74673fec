//go:build !race

package rpctest

// RaceEnabled reports whether the tests run under the race detector.
const RaceEnabled = false
