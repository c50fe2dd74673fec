package lessoncheck

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each lesson says at its top how long it takes to read, counting 200
// words of prose and 20 lines of code, diagrams and transcripts a minute:
//
//	About 25 minutes to read: 4,000 words of prose (at 200 words a
//	minute) and 170 lines of code, diagrams and transcripts (at 20 a
//	minute).
//
// The words are rounded to the nearest hundred, the lines to the nearest
// ten and the minutes to the nearest five, so that a small edit leaves
// the header as it is. TestReadingTime counts them again; with -update
// (make golden) it writes what it counts.
var readingTimeRE = regexp.MustCompile(`About (\d+) minutes to read: ([\d,]+) words of prose\s+\(at 200 words\s+a\s+minute\)\s+and\s+([\d,]+)\s+lines of code,\s+diagrams\s+and\s+transcripts`)

// readingTime is what a lesson holds, rounded as its header says it.
type readingTime struct {
	minutes, words, lines int
}

// countReadingTime counts d's words of prose (outside fenced blocks and
// HTML comments) and its non-blank lines inside fenced blocks, and rounds
// them as the header does.
func countReadingTime(d *doc) readingTime {
	words, lines := 0, 0
	for i, line := range d.lines {
		if !d.fenced[i] {
			words += len(strings.Fields(htmlCommentRE.ReplaceAllString(line, "")))
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed != "" && !strings.HasPrefix(trimmed, "```") { // a fence is not a line of code
			lines++
		}
	}
	minutes := float64(words)/200 + float64(lines)/20
	return readingTime{
		minutes: roundTo(minutes, 5),
		words:   roundTo(float64(words), 100),
		lines:   roundTo(float64(lines), 10),
	}
}

var htmlCommentRE = regexp.MustCompile(`<!--.*?-->`)

func roundTo(x float64, step int) int {
	return int(math.Round(x/float64(step))) * step
}

// checkReadingTime checks the header of the lesson text at path and
// returns the text with the header as it should be, and a message when it
// is not (empty when it is).
func checkReadingTime(path, text string) (fixed, failure string) {
	d := parseDoc(path, text)
	want := countReadingTime(d)
	found := readingTimeRE.FindAllStringSubmatchIndex(text, -1)
	if len(found) != 1 {
		return text, fmt.Sprintf("%s: %d headers \"About N minutes to read: N words of prose (at 200 words a minute) and N lines of code, diagrams and transcripts\", want one at the top", path, len(found))
	}
	m := found[0]
	number := func(k int) int {
		n, _ := strconv.Atoi(strings.ReplaceAll(text[m[2*k]:m[2*k+1]], ",", ""))
		return n
	}
	got := readingTime{minutes: number(1), words: number(2), lines: number(3)}
	if got == want {
		return text, ""
	}
	// Write the three numbers in place, from the last, so that the
	// offsets of the others hold.
	fixed = text
	for _, k := range []int{3, 2, 1} {
		n := []int{0, want.minutes, want.words, want.lines}[k]
		fixed = fixed[:m[2*k]] + withCommas(n) + fixed[m[2*k+1]:]
	}
	return fixed, fmt.Sprintf("%s: says about %d minutes, %s words of prose and %s lines of code; it holds about %d, %s and %s",
		path, got.minutes, withCommas(got.words), withCommas(got.lines), want.minutes, withCommas(want.words), withCommas(want.lines))
}

// TestReadingTime checks the reading time at the top of every lesson
// against the words and lines it holds.
func TestReadingTime(t *testing.T) {
	root := root(t)
	lessons := 0
	for _, path := range markdownFiles(t, root) {
		if !lessonRE.MatchString(filepath.ToSlash(path)) {
			continue
		}
		lessons++
		data, err := os.ReadFile(filepath.Join(root, path))
		require.NoError(t, err)
		fixed, failure := checkReadingTime(filepath.ToSlash(path), string(data))
		switch {
		case failure == "":
		case rpctest.Updating() && fixed != string(data):
			require.NoError(t, os.WriteFile(filepath.Join(root, path), []byte(fixed), 0o644))
			t.Logf("rewrote %s: %s", path, failure)
		default:
			t.Errorf("%s\n    If the lesson changed, run `go test ./internal/lessoncheck/ -update` and review the diff.", failure)
		}
	}
	require.NotZero(t, lessons, "no lesson under docs/")
}

// TestCheckReadingTime checks the count and the rewrite on a made-up
// lesson: 400 words of prose (two minutes) and 60 lines in a fence (three).
func TestCheckReadingTime(t *testing.T) {
	prose := strings.Repeat("word ", 396) + "<!-- a comment of six words here -->"
	code := strings.Repeat("x := 1\n\n", 60)
	lesson := func(minutes, words, lines string) string {
		return "# 01\n\nAbout " + minutes + " minutes to read: " + words + " words of prose (at 200 words\na minute) and " +
			lines + " lines of code, diagrams and\ntranscripts (at 20 a minute).\n\n" + prose + "\n\n```go\n" + code + "```\n"
	}
	// The header's own words count as prose: 396 and 29 round to 400.
	right := lesson("5", "400", "60")
	fixed, failure := checkReadingTime("docs/01-a.md", right)
	assert.Empty(t, failure)
	assert.Equal(t, right, fixed)

	fixed, failure = checkReadingTime("docs/01-a.md", lesson("25", "3,300", "170"))
	assert.Equal(t, "docs/01-a.md: says about 25 minutes, 3,300 words of prose and 170 lines of code; it holds about 5, 400 and 60", failure)
	assert.Equal(t, right, fixed, "the fix changes the three numbers and nothing else")

	_, failure = checkReadingTime("docs/01-a.md", "# 01\n\nno header\n")
	assert.Contains(t, failure, "0 headers")
}
