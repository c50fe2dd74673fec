package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A page as make bench-report writes it, with bytes around the markers
// that a careless rewrite would change: a CRLF line, trailing spaces, no
// newline at the end.
const (
	pageHead = "# Benchmarks\r\n\nsome text  \n\t| a | b |\n" + beginMarker + "\n"
	pageTail = endMarker + "\n\n## How to read this page  \nlast line, no newline"
	testPage = pageHead + "Run `make bench-load` to fill this section.\n" + pageTail
)

func TestReplaceSectionKeepsEverythingOutsideTheMarkers(t *testing.T) {
	got, err := replaceSection([]byte(testPage), "## Under load\n\n| x |\n")
	require.NoError(t, err)
	assert.Equal(t, pageHead+"## Under load\n\n| x |\n"+pageTail, string(got))

	got, err = replaceSection([]byte(testPage), "no newline at its end")
	require.NoError(t, err)
	assert.Equal(t, pageHead+"no newline at its end\n"+pageTail, string(got), "the end marker stays on a line of its own")

	crlf := "a\r\n" + beginMarker + "\r\nold\r\n" + endMarker + "\r\nb\r\n"
	got, err = replaceSection([]byte(crlf), "new\n")
	require.NoError(t, err)
	assert.Equal(t, "a\r\n"+beginMarker+"\r\nnew\n"+endMarker+"\r\nb\r\n", string(got))

	atEnd := "a\n" + beginMarker + "\nold\n" + endMarker
	got, err = replaceSection([]byte(atEnd), "new\n")
	require.NoError(t, err)
	assert.Equal(t, "a\n"+beginMarker+"\nnew\n"+endMarker, string(got), "an end marker that ends the file")
}

func TestReplaceSectionIsIdempotent(t *testing.T) {
	section := "## Under load\n\n| stage | calls/s |\n|---|--:|\n| 02-json-tcp | 10,603 |\n"
	once, err := replaceSection([]byte(testPage), section)
	require.NoError(t, err)
	twice, err := replaceSection(once, section)
	require.NoError(t, err)
	assert.Equal(t, string(once), string(twice))

	other, err := replaceSection([]byte(testPage), "another run\n")
	require.NoError(t, err)
	again, err := replaceSection(other, section)
	require.NoError(t, err)
	assert.Equal(t, string(once), string(again), "a new run replaces the old one, leaving nothing of it")
}

func TestReplaceSectionNeedsBothMarkers(t *testing.T) {
	for _, tc := range []struct {
		name, page, want string
	}{
		{"no markers", "# Benchmarks\n\ntext\n", "no line " + beginMarker},
		{"no begin", "# Benchmarks\n" + endMarker + "\n", "no line " + beginMarker},
		{"no end", "# Benchmarks\n" + beginMarker + "\ntext\n", "no line " + endMarker},
		{"end before begin", endMarker + "\n" + beginMarker + "\n", "comes after"},
		{"begin twice", beginMarker + "\n" + beginMarker + "\n" + endMarker + "\n", "twice"},
		{"end twice", beginMarker + "\n" + endMarker + "\n" + endMarker + "\n", "twice"},
		{"marker inside a line", "see " + beginMarker + "\n" + endMarker + "\n", "no line " + beginMarker},
		{"begin ends the file", endMarker + "\n" + beginMarker, "ends the file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := replaceSection([]byte(tc.page), "new\n")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestUpdatePage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "benchmarks.md")
	require.NoError(t, os.WriteFile(path, []byte(testPage), 0o640))

	require.NoError(t, updatePage(path, "new\n"))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, pageHead+"new\n"+pageTail, string(got))
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), info.Mode().Perm(), "the page keeps its mode")
	assertOnlyFile(t, dir, "benchmarks.md")
}

func TestUpdatePageTellsToRunBenchReport(t *testing.T) {
	dir := t.TempDir()
	err := updatePage(filepath.Join(dir, "missing.md"), "new\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run make bench-report first")

	path := filepath.Join(dir, "benchmarks.md")
	const noMarkers = "# Benchmarks\n\nno markers here\n"
	require.NoError(t, os.WriteFile(path, []byte(noMarkers), 0o644))
	err = updatePage(path, "new\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run make bench-report first")
	assert.Contains(t, err.Error(), beginMarker)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, noMarkers, string(got), "a page without markers is left alone")
	assertOnlyFile(t, dir, "benchmarks.md")
}

// assertOnlyFile checks that dir holds name and nothing else: no
// temporary file left behind.
func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{name}, names, "files in %s: %s", dir, strings.Join(names, ", "))
}
