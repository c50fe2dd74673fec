package lessoncheck

import (
	"bufio"
	"fmt"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { rpctest.VerifyMain(m) }

// root is the repository's top folder, where go.mod is.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, "go.mod"))
	return dir
}

// markdownFiles returns every .md file in the repository, relative to root.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			rel, err := filepath.Rel(root, path)
			files = append(files, rel)
			return err
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

// doc is a markdown file read into lines, with what the checks need.
type doc struct {
	path  string   // relative to the root
	lines []string // the file, line by line
	// fenced[i] is true when line i is inside a fenced code block or is
	// one of its fences.
	fenced []bool
}

func readDoc(t *testing.T, root, path string) *doc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, path))
	require.NoError(t, err)
	return parseDoc(path, string(data))
}

// parseDoc reads text, the contents of the markdown file at path.
func parseDoc(path, text string) *doc {
	d := &doc{path: path, lines: strings.Split(text, "\n")}
	d.fenced = make([]bool, len(d.lines))
	fence := "" // the fence of the block we are in, if any
	for i, line := range d.lines {
		trimmed := strings.TrimSpace(line)
		switch {
		case fence == "" && strings.HasPrefix(trimmed, "```"):
			fence = trimmed[:len(trimmed)-len(strings.TrimLeft(trimmed, "`"))]
			d.fenced[i] = true
		case fence != "" && strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`") == "":
			fence = "" // a closing fence is at least as long as the opening one
			d.fenced[i] = true
		default:
			d.fenced[i] = fence != ""
		}
	}
	return d
}

var (
	linkRE = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeRE = regexp.MustCompile("`[^`]*`")
)

// TestLinks checks that every relative link in every markdown file leads to
// a file or folder that exists, and that every #anchor names a heading of
// the markdown file it points into.
func TestLinks(t *testing.T) {
	root := root(t)
	anchors := map[string][]string{} // markdown file -> its heading anchors
	anchorsOf := func(path string) []string {
		if a, ok := anchors[path]; ok {
			return a
		}
		anchors[path] = headingAnchors(readDoc(t, root, path))
		return anchors[path]
	}
	for _, path := range markdownFiles(t, root) {
		d := readDoc(t, root, path)
		for i, line := range d.lines {
			if d.fenced[i] {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(codeRE.ReplaceAllString(line, ""), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				where := fmt.Sprintf("%s:%d: link %s", path, i+1, target)
				file, anchor, _ := strings.Cut(target, "#")
				dest := path
				if file != "" {
					dest = filepath.Join(filepath.Dir(path), file)
					if rel, err := filepath.Rel(root, filepath.Join(root, dest)); err != nil || strings.HasPrefix(rel, "..") {
						t.Errorf("%s: leads out of the repository", where)
						continue
					}
					if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
						t.Errorf("%s: no such file", where)
						continue
					}
				}
				if anchor != "" && strings.HasSuffix(dest, ".md") && !slices.Contains(anchorsOf(dest), anchor) {
					t.Errorf("%s: %s has no heading with anchor #%s", where, dest, anchor)
				}
			}
		}
	}
}

// headingAnchors returns the anchors GitHub gives the headings of d:
// lower case, punctuation dropped, spaces turned into hyphens, and -1, -2,
// ... added to repeats.
func headingAnchors(d *doc) []string {
	var anchors []string
	seen := map[string]int{}
	for i, line := range d.lines {
		if d.fenced[i] || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a]++
			a = fmt.Sprintf("%s-%d", a, n)
		} else {
			seen[a] = 1
		}
		anchors = append(anchors, a)
	}
	return anchors
}

var stageRE = regexp.MustCompile(`^(\d\d)-[a-z0-9-]+$`)

// TestStageShape checks that every stage has the parts the course promises:
// a server and a client command, a README, golden files, and a lesson that
// follows the course's structure.
func TestStageShape(t *testing.T) {
	root := root(t)
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	stages := 0
	for _, e := range entries {
		if !e.IsDir() || !stageRE.MatchString(e.Name()) {
			continue
		}
		stages++
		stage := e.Name()
		t.Run(stage, func(t *testing.T) {
			for _, part := range []string{"README.md", "doc.go", "server.go", "client.go",
				"cmd/server/main.go", "cmd/client/main.go", "testdata/demo.golden"} {
				assert.FileExists(t, filepath.Join(root, stage, part))
			}
			lesson := filepath.Join("docs", stage+".md")
			if assert.FileExists(t, filepath.Join(root, lesson)) {
				checkLessonSections(t, readDoc(t, root, lesson))
			}
		})
	}
	assert.NotZero(t, stages)
}

// TestStagesStandAlone checks that no file of a stage, tests included,
// imports another stage: a learner can take any one stage and run it.
func TestStagesStandAlone(t *testing.T) {
	root := root(t)
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	for _, e := range entries {
		if !e.IsDir() || !stageRE.MatchString(e.Name()) {
			continue
		}
		stage := e.Name()
		err := filepath.WalkDir(filepath.Join(root, stage), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				dir, _, _ := strings.Cut(strings.TrimPrefix(strings.Trim(imp.Path.Value, `"`), modulePath+"/"), "/")
				if stageRE.MatchString(dir) && dir != stage {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s imports stage %s: each stage stands alone", rel, dir)
				}
			}
			return nil
		})
		require.NoError(t, err)
	}
}

// TestExercisesTagOnlyAdds checks that no Go file is built only without the
// exercises tag: make test runs one go vet, with the tag, and that vets
// every file only while the tag adds files and takes none away.
func TestExercisesTagOnlyAdds(t *testing.T) {
	root := root(t)
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		files++
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for _, group := range f.Comments {
			for _, c := range group.List {
				expr, err := constraint.Parse(c.Text)
				if err != nil {
					continue // not a build constraint
				}
				for _, race := range []bool{false, true} {
					with := expr.Eval(func(tag string) bool { return tag == "exercises" || tag == "race" && race })
					without := expr.Eval(func(tag string) bool { return tag == "race" && race })
					if without && !with {
						rel, _ := filepath.Rel(root, path)
						t.Errorf("%s: %s builds it only without the exercises tag, which make test's one go vet sets", rel, c.Text)
						break
					}
				}
			}
		}
		return nil
	})
	require.NoError(t, err)
	assert.NotZero(t, files)
}

// modulePath is the module's import path, from go.mod.
const modulePath = "github.com/rpc-from-scratch/course"

// lessonSections are the headings every lesson has, in this order (see
// ../shared/STYLE.md). A heading may go on after the words given here.
var lessonSections = []string{
	"## What this stage adds",
	"## One call",
	"## The wire",
	"## The code",
	"## Run it",
	"## What breaks in the article's version",
	"## The diff",
	"## Exercises",
	"## Sources",
}

func checkLessonSections(t *testing.T, d *doc) {
	t.Helper()
	next := 0
	for i, line := range d.lines {
		if d.fenced[i] || !strings.HasPrefix(line, "## ") {
			continue
		}
		if next < len(lessonSections) && strings.HasPrefix(line, lessonSections[next]) {
			next++
		}
	}
	if next < len(lessonSections) {
		t.Errorf("%s: no section %q after the ones before it; a lesson has, in order: %q", d.path, lessonSections[next], lessonSections)
	}
	if !slices.ContainsFunc(d.lines, func(l string) bool { return strings.HasPrefix(l, "```mermaid") }) {
		t.Errorf("%s: no mermaid sequence diagram", d.path)
	}
}

// TestGlossary checks that each glossary row gives a term in English and
// in Chinese.
func TestGlossary(t *testing.T) {
	root := root(t)
	f, err := os.Open(filepath.Join(root, "docs", "glossary.md"))
	require.NoError(t, err)
	defer f.Close()
	rows := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| English") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if assert.Len(t, cells, 3, "glossary row %q: want | English | 中文 | meaning |", line) {
			assert.True(t, slices.ContainsFunc([]rune(cells[1]), func(r rune) bool { return unicode.Is(unicode.Han, r) }),
				"glossary row %q: the second cell should be Chinese", line)
		}
		rows++
	}
	require.NoError(t, sc.Err())
	assert.Greater(t, rows, 10)
}
