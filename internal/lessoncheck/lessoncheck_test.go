package lessoncheck

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
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
	d := &doc{path: path, lines: strings.Split(string(data), "\n")}
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

// quoteRE matches the marker a lesson puts before a code block it quotes:
//
//	<!-- code: 01-http-add/server.go Server.ServeHTTP -->
//
// The path is relative to the repository's root; the symbol is optional.
var quoteRE = regexp.MustCompile(`^<!-- code: (\S+)(?: (\S+))? -->$`)

// TestQuotedCode checks that every code block a markdown file quotes from a
// source file still matches that file. See docs/README.md for the rules.
//
// A quote that no longer matches is a defect in the lesson, with one
// exception: a learner doing the exercises changes the code the lessons
// quote, and a red "these lines are not in the source" would read as if they
// had broken the docs. So when the quoted file has uncommitted changes, the
// quote is skipped with a message saying so, unless RPC_LESSONCHECK=strict
// (CI sets it, and so should anyone editing a lesson or its code, or a stale
// quote could hide behind their own uncommitted change). Once the change is
// committed or undone, the quote is checked again.
func TestQuotedCode(t *testing.T) {
	root := root(t)
	strict := os.Getenv("RPC_LESSONCHECK") == "strict"
	var skipped []string
	quotes := 0
	for _, path := range markdownFiles(t, root) {
		d := readDoc(t, root, path)
		for i, line := range d.lines {
			m := quoteRE.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil || d.fenced[i] {
				continue
			}
			quotes++
			where := fmt.Sprintf("%s:%d: quote of %s %s", path, i+1, m[1], m[2])
			block, err := d.blockAfter(i)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			source, err := sourceLines(root, m[1], m[2])
			if err == nil {
				err = matchExcerpt(block, source)
			}
			if err == nil {
				continue
			}
			if skip := staleQuote(path, m[1], m[2], uncommitted(root, m[1]), strict); skip != "" {
				skipped = append(skipped, skip)
				continue
			}
			t.Errorf("%s: %v", where, err)
		}
	}
	assert.NotZero(t, quotes, "no lesson quotes any code: is the marker convention still in use?")
	if len(skipped) > 0 {
		// After an Errorf above, the test still fails: a skip does not undo it.
		t.Skip(strings.Join(skipped, "\n"))
	}
}

// staleQuote decides what a quote that does not match its source means. It
// returns the message to skip it with, or "" when it is a failure: when the
// quoted file is unchanged since the last commit (the lesson is out of
// date), or in strict mode (RPC_LESSONCHECK=strict, as in CI).
func staleQuote(mdPath, file, symbol string, changed, strict bool) string {
	if !changed || strict {
		return ""
	}
	who := mdPath
	if m := lessonRE.FindStringSubmatch(filepath.ToSlash(mdPath)); m != nil {
		who = "lesson " + m[1]
	}
	what := file
	if symbol != "" {
		what += " " + symbol
	}
	return fmt.Sprintf("%s quotes code you changed (%s): expected while you do the exercises; "+
		"the check runs again once your change is committed or undone (CI always runs it)", who, what)
}

// lessonRE matches a lesson's path and captures its number.
var lessonRE = regexp.MustCompile(`^docs/(\d\d)-[a-z0-9-]+\.md$`)

// uncommitted reports whether file (relative to root) differs from the last
// commit. Without git, or outside a repository, nothing counts as changed,
// so every quote is checked.
func uncommitted(root, file string) bool {
	// Outside a repository, git diff turns into git diff --no-index and
	// exits 1, as for a change: ask first whether there is a commit at all.
	if exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", "HEAD").Run() != nil {
		return false
	}
	err := exec.Command("git", "-C", root, "diff", "--quiet", "HEAD", "--", file).Run()
	var exit *exec.ExitError
	return errors.As(err, &exit) && exit.ExitCode() == 1
}

func TestStaleQuote(t *testing.T) {
	const want = "lesson 01 quotes code you changed (01-http-add/server.go Server.ServeHTTP): " +
		"expected while you do the exercises; the check runs again once your change is committed or undone (CI always runs it)"
	assert.Equal(t, want, staleQuote("docs/01-http-add.md", "01-http-add/server.go", "Server.ServeHTTP", true, false),
		"changed, not strict: skipped")
	assert.Empty(t, staleQuote("docs/01-http-add.md", "01-http-add/server.go", "Server.ServeHTTP", true, true),
		"changed, strict: a failure")
	assert.Empty(t, staleQuote("docs/01-http-add.md", "01-http-add/server.go", "Server.ServeHTTP", false, false),
		"unchanged: a failure")
	assert.Empty(t, staleQuote("docs/01-http-add.md", "01-http-add/server.go", "Server.ServeHTTP", false, true),
		"unchanged, strict: a failure")
	assert.Equal(t, "README.md quotes code you changed (01-http-add/testdata/demo.golden): "+
		"expected while you do the exercises; the check runs again once your change is committed or undone (CI always runs it)",
		staleQuote("README.md", "01-http-add/testdata/demo.golden", "", true, false), "not a lesson, no symbol")
}

// blockAfter returns the lines of the fenced code block that follows the
// marker on line i, with only blank lines between them.
func (d *doc) blockAfter(i int) ([]string, error) {
	j := i + 1
	for j < len(d.lines) && strings.TrimSpace(d.lines[j]) == "" {
		j++
	}
	if j == len(d.lines) || !strings.HasPrefix(strings.TrimSpace(d.lines[j]), "```") {
		return nil, fmt.Errorf("no fenced code block right after the marker")
	}
	// A block inside a list item is indented; as in CommonMark, the
	// fence's indentation is not part of the code.
	indent := d.lines[j][:len(d.lines[j])-len(strings.TrimLeft(d.lines[j], " "))]
	var block []string
	for k := j + 1; k < len(d.lines); k++ {
		if !d.fenced[k] || strings.HasPrefix(strings.TrimSpace(d.lines[k]), "```") {
			return block, nil
		}
		block = append(block, strings.TrimPrefix(d.lines[k], indent))
	}
	return nil, fmt.Errorf("code block never ends")
}

// sourceLines returns the lines of file, or of one declaration in it (with
// its doc comment) when symbol is given: "Name" for a function, type,
// variable or constant, "Type.Method" for a method.
func sourceLines(root, file, symbol string) ([]string, error) {
	path := filepath.Join(root, filepath.FromSlash(file))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	if symbol == "" {
		return lines, nil
	}
	if !strings.HasSuffix(file, ".go") {
		return nil, fmt.Errorf("a symbol can only be named in a .go file")
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, data, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	for _, decl := range f.Decls {
		if declares(decl, symbol) {
			start := decl.Pos()
			if doc := declDoc(decl); doc != nil {
				start = doc.Pos()
			}
			return lines[fset.Position(start).Line-1 : fset.Position(decl.End()).Line], nil
		}
	}
	return nil, fmt.Errorf("%s declares no %s", file, symbol)
}

func declares(decl ast.Decl, symbol string) bool {
	switch decl := decl.(type) {
	case *ast.FuncDecl:
		name := decl.Name.Name
		if decl.Recv != nil && len(decl.Recv.List) == 1 {
			name = receiverName(decl.Recv.List[0].Type) + "." + name
		}
		return name == symbol
	case *ast.GenDecl:
		for _, spec := range decl.Specs {
			switch spec := spec.(type) {
			case *ast.TypeSpec:
				if spec.Name.Name == symbol {
					return true
				}
			case *ast.ValueSpec:
				for _, n := range spec.Names {
					if n.Name == symbol {
						return true
					}
				}
			}
		}
	}
	return false
}

func receiverName(expr ast.Expr) string {
	switch e := expr.(type) {
	case *ast.StarExpr:
		return receiverName(e.X)
	case *ast.IndexExpr:
		return receiverName(e.X)
	case *ast.Ident:
		return e.Name
	}
	return ""
}

func declDoc(decl ast.Decl) *ast.CommentGroup {
	switch decl := decl.(type) {
	case *ast.FuncDecl:
		return decl.Doc
	case *ast.GenDecl:
		return decl.Doc
	}
	return nil
}

// isElision reports whether an excerpt line stands for lines left out.
func isElision(line string) bool {
	s := strings.TrimSpace(line)
	return s == "// ..." || s == "..." || s == "# ..."
}

// matchExcerpt checks that excerpt appears in source: the runs of lines
// between elision lines must each appear, whole and unchanged, in order.
func matchExcerpt(excerpt, source []string) error {
	var runs [][]string
	var run []string
	for _, line := range excerpt {
		if isElision(line) {
			if len(run) > 0 {
				runs = append(runs, run)
			}
			run = nil
			continue
		}
		run = append(run, line)
	}
	if len(run) > 0 {
		runs = append(runs, run)
	}
	if len(runs) == 0 {
		return fmt.Errorf("the code block is empty")
	}
	from := 0
	for _, run := range runs {
		at := index(source[from:], run)
		if at < 0 {
			return fmt.Errorf("these lines are not in the source (in this order, unchanged):\n%s", strings.Join(run, "\n"))
		}
		from += at + len(run)
	}
	return nil
}

// index returns where run starts in lines, or -1.
func index(lines, run []string) int {
	for i := 0; i+len(run) <= len(lines); i++ {
		if slices.Equal(lines[i:i+len(run)], run) {
			return i
		}
	}
	return -1
}

func TestMatchExcerpt(t *testing.T) {
	source := []string{"func f() {", "\ta := 1", "\tb := 2", "\treturn a + b", "}"}
	assert.NoError(t, matchExcerpt([]string{"func f() {", "\t// ...", "\treturn a + b", "}"}, source))
	assert.NoError(t, matchExcerpt(source, source))
	assert.Error(t, matchExcerpt([]string{"\tb := 2", "\t// ...", "\ta := 1"}, source), "out of order")
	assert.Error(t, matchExcerpt([]string{"\ta := 1", "\treturn a + b"}, source), "a gap with no elision mark")
	assert.Error(t, matchExcerpt([]string{"    a := 1"}, source), "indentation changed")
	assert.Error(t, matchExcerpt([]string{"// ..."}, source), "nothing quoted")
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
