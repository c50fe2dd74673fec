//go:build race

package main

// The race detector keeps shadow memory beside the program's own, so a
// server built with it takes more than the program does.
func init() { raceEnabled = true }
