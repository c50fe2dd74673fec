// Package crossstage holds the tests where two stages meet: stage 01's
// stub and Python client calling stage 06's server, and the two servers'
// answers set side by side (crossstage_test.go); the bytes that stages 02,
// 03 and 04 put on the wire for the same calls, the table that lesson 04
// quotes from testdata/sizes.golden (wiresizes_test.go); and stages 04
// and 05 each serving its own client's bytes from one binary that links
// both, where gob numbers one stage's types after the other's
// (gobtypes_test.go).
//
// The stages never import each other; each one stands alone, as a lesson
// should. This package is the course's, not a lesson's: it has no code,
// only tests, and it is where two stages may meet.
package crossstage
