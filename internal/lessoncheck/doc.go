// Package lessoncheck holds the tests that keep the prose honest: every
// relative link in the markdown files resolves, every code excerpt a lesson
// quotes still matches its source file, every stage has its parts, and
// every lesson has the course's sections. It has no code of its own.
package lessoncheck
