// Package crossstage holds tests that run one stage's clients against
// another stage's server: stage 01's stub and Python client calling stage
// 06's server, and the two servers' answers set side by side.
//
// The stages never import each other; each one stands alone, as a lesson
// should. This package is the course's, not a lesson's: it has no code,
// only tests, and it is where two stages may meet.
package crossstage
