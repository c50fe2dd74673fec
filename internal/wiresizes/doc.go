// Package wiresizes holds a test that sets stages 02, 03 and 04 side by
// side: the same calls, and the bytes each stage puts on the wire for them.
// It lives here, not in a stage, because each stage stands alone and
// imports no other. Lesson 04 quotes its golden file.
package wiresizes
