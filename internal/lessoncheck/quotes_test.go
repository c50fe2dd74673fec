package lessoncheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quoteRE matches the marker a lesson puts before a code block it quotes:
//
//	<!-- code: 01-http-add/server.go Server.ServeHTTP -->
//
// The path is relative to the repository's root; the symbol is optional.
var quoteRE = regexp.MustCompile(`^<!-- code: (\S+)(?: (\S+))? -->$`)

// TestQuotedCode checks that every code block a markdown file quotes from a
// source file still matches that file. See docs/README.md for the rules.
//
// A quote that does not match is a defect in the lesson, with one
// exception: a learner doing the exercises changes the code the lessons
// quote, commits it or not, and a red "these lines are not in the source"
// would read as if they had broken the docs. So a quote that does not
// match the file as it is, but does match it as the course has it (see
// courseBase), is skipped with a message saying so. RPC_LESSONCHECK=strict
// turns the exception off: CI sets it, and so should anyone who edits a
// lesson or the code it quotes, or a lesson their own change left behind
// would be skipped too.
func TestQuotedCode(t *testing.T) {
	r := checkQuotes(t, root(t), os.Getenv("RPC_LESSONCHECK") == "strict")
	for _, f := range r.failures {
		t.Error(f)
	}
	assert.NotZero(t, r.quotes, "no lesson quotes any code: is the marker convention still in use?")
	if len(r.skipped) > 0 {
		// After an Error above, the test still fails: a skip does not undo it.
		t.Skip(strings.Join(r.skipped, "\n"))
	}
}

// quoteResult is what checkQuotes found.
type quoteResult struct {
	quotes   int      // how many quotes there are
	failures []string // quotes that are wrong, one message each
	skipped  []string // quotes of code the learner changed, one message each
}

// checkQuotes checks every quote in the markdown files under root. Unless
// strict, a quote that does not match its file is skipped when it matches
// the file as the course has it.
func checkQuotes(t *testing.T, root string, strict bool) quoteResult {
	t.Helper()
	var r quoteResult
	var base *courseBase // looked up at the first quote that needs it
	for _, path := range markdownFiles(t, root) {
		d := readDoc(t, root, path)
		for i, line := range d.lines {
			m := quoteRE.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil || d.fenced[i] {
				continue
			}
			r.quotes++
			file, symbol := m[1], m[2]
			where := fmt.Sprintf("%s:%d: quote of %s %s", path, i+1, file, symbol)
			block, err := d.blockAfter(i)
			if err != nil {
				r.failures = append(r.failures, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
			if err == nil {
				err = quoteMatches(block, file, data, symbol)
			}
			if err == nil {
				continue
			}
			if !strict {
				if base == nil {
					base = findCourseBase(root)
				}
				if base.matches(block, file, symbol) {
					r.skipped = append(r.skipped, learnersChange(path, file, symbol, base))
					continue
				}
			}
			r.failures = append(r.failures, fmt.Sprintf("%s: %v", where, err))
		}
	}
	return r
}

// quoteMatches checks block against data, the contents of file.
func quoteMatches(block []string, file string, data []byte, symbol string) error {
	source, err := sourceLines(file, data, symbol)
	if err != nil {
		return err
	}
	return matchExcerpt(block, source)
}

// courseBase is the commit that holds the course as the learner got it:
// where the history of what is checked out parts from the course's main
// (origin/main in a clone, else a branch named main), or HEAD when there
// is neither. Everything a learner changed since, committed or not, is
// their own change. A course developer's is too, which is why CI and
// anyone editing a lesson run strict.
type courseBase struct {
	root   string
	commit string // "" when there is none: no git, or no commit yet
	from   string // how it was found, for the messages
}

// courseMains are the names the course's main may have, the first found
// wins: a clone's origin/main, then a branch named main.
var courseMains = []string{"origin/main", "main"}

func findCourseBase(root string) *courseBase {
	b := &courseBase{root: root}
	head, err := b.git("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
	if err != nil {
		return b // no git, or no commit: every quote is checked
	}
	// go test caches a passing run and keys it on the files the test read;
	// noting HEAD's log makes a commit, merge or checkout a reason to run
	// again, since the base may move with them.
	if log, err := b.git("rev-parse", "--git-path", "logs/HEAD"); err == nil {
		if !filepath.IsAbs(log) {
			log = filepath.Join(root, log)
		}
		_, _ = os.Stat(log)
	}
	for _, main := range courseMains {
		if commit, err := b.git("merge-base", "HEAD", main); err == nil {
			b.commit, b.from = commit, "where HEAD parts from "+main
			return b
		}
	}
	b.commit, b.from = head, "HEAD, as neither "+strings.Join(courseMains, " nor ")+" exists"
	return b
}

// git runs git in b.root and returns what it printed, trimmed.
func (b *courseBase) git(args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", b.root}, args...)...).Output()
	return strings.TrimSpace(string(out)), err
}

// matches reports whether block quotes file as the base commit has it.
func (b *courseBase) matches(block []string, file, symbol string) bool {
	if b.commit == "" {
		return false
	}
	// "./" makes the path relative to b.root, not to the repository's top.
	data, err := exec.Command("git", "-C", b.root, "show", b.commit+":./"+file).Output()
	return err == nil && quoteMatches(block, file, data, symbol) == nil
}

// changed reports whether anything in dirs (relative to b.root) differs
// from the base commit: a change committed since, a change not committed,
// or a file git does not track (make diff counts those too). With no base,
// nothing has changed.
func (b *courseBase) changed(dirs ...string) bool {
	if b.commit == "" || len(dirs) == 0 {
		return false
	}
	paths := append([]string{"--"}, dirs...)
	if _, err := b.git(append([]string{"diff", "--quiet", b.commit}, paths...)...); err != nil {
		return true
	}
	untracked, err := b.git(append([]string{"ls-files", "--others", "--exclude-standard"}, paths...)...)
	return err != nil || untracked != ""
}

// learnersChange is the message a quote of code the learner changed is
// skipped with.
func learnersChange(mdPath, file, symbol string, base *courseBase) string {
	who := mdPath
	if m := lessonRE.FindStringSubmatch(filepath.ToSlash(mdPath)); m != nil {
		who = "lesson " + m[1]
	}
	what := file
	if symbol != "" {
		what += " " + symbol
	}
	return fmt.Sprintf("%s quotes code you changed (%s): the quote matches the course's version "+
		"(commit %.12s, %s), so the change is yours: expected while you do the exercises, "+
		"committed or not (RPC_LESSONCHECK=strict checks every quote against your files, as CI does)",
		who, what, base.commit, base.from)
}

// lessonRE matches a lesson's path and captures its number.
var lessonRE = regexp.MustCompile(`^docs/(\d\d)-[a-z0-9-]+\.md$`)

// TestQuotesOfALearnersChange plays a learner on a small course of its
// own, one function and a lesson that quotes it, in a git repository: the
// quote of a function the learner changed is skipped whether the change
// is committed or not, and fails in strict mode; a quote that matches
// neither the learner's file nor the course's fails in every mode.
func TestQuotesOfALearnersChange(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not on PATH: the learner's repository cannot be played")
	}
	const (
		add     = "package x\n\n// add adds.\nfunc add(a, b int) int {\n\treturn a + b\n}\n"
		changed = "package x\n\n// add adds.\nfunc add(a, b int) int {\n\treturn b + a\n}\n"
		lesson  = "# 01\n\n<!-- code: 01-x/add.go add -->\n```go\nfunc add(a, b int) int {\n\treturn a + b\n}\n```\n"
	)
	course := t.TempDir()
	git(t, course, "init", "-q", "-b", "main")
	writeFile(t, course, "01-x/add.go", add)
	writeFile(t, course, "docs/01-x.md", lesson)
	git(t, course, "add", ".")
	git(t, course, "commit", "-q", "-m", "the course")

	learner := t.TempDir()
	git(t, learner, "clone", "-q", course, ".")
	check := func(name string, strict bool, failures, skipped int) {
		t.Helper()
		r := checkQuotes(t, learner, strict)
		assert.Equal(t, 1, r.quotes, name)
		assert.Len(t, r.failures, failures, "%s: failures %q", name, r.failures)
		assert.Len(t, r.skipped, skipped, "%s: skipped %q", name, r.skipped)
	}
	check("as cloned", false, 0, 0)
	check("as cloned, strict", true, 0, 0)

	writeFile(t, learner, "01-x/add.go", changed)
	check("changed, not committed", false, 0, 1)
	check("changed, not committed, strict", true, 1, 0)

	base := findCourseBase(learner)
	assert.True(t, base.changed("01-x"), "a change not committed")
	assert.False(t, base.changed("docs"), "nothing changed")
	writeFile(t, learner, "docs/notes.md", "mine\n")
	assert.True(t, base.changed("docs"), "a file git does not track")
	require.NoError(t, os.Remove(filepath.Join(learner, "docs", "notes.md")))

	git(t, learner, "commit", "-q", "-a", "-m", "exercise 1")
	assert.True(t, findCourseBase(learner).changed("01-x"), "a change committed")
	check("committed on main", false, 0, 1)
	check("committed on main, strict", true, 1, 0)
	r := checkQuotes(t, learner, false)
	require.Len(t, r.skipped, 1)
	assert.Contains(t, r.skipped[0], "lesson 01 quotes code you changed (01-x/add.go add)")
	assert.Contains(t, r.skipped[0], "where HEAD parts from origin/main")

	// A lesson that is wrong about the course is wrong whoever changed
	// the code since.
	writeFile(t, learner, "docs/01-x.md", strings.Replace(lesson, "a + b", "a - b", 1))
	check("the lesson wrong about the course too", false, 1, 0)
	git(t, learner, "checkout", "-q", "--", "docs/01-x.md")

	// With no origin, a branch named main is the course's: work committed
	// on a branch of one's own is still the learner's.
	git(t, course, "checkout", "-q", "-b", "mine")
	writeFile(t, course, "01-x/add.go", changed)
	git(t, course, "commit", "-q", "-a", "-m", "exercise 1")
	check2 := checkQuotes(t, course, false)
	assert.Empty(t, check2.failures)
	if assert.Len(t, check2.skipped, 1) {
		assert.Contains(t, check2.skipped[0], "where HEAD parts from main")
	}

	// Outside git, every quote is checked.
	plain := t.TempDir()
	writeFile(t, plain, "01-x/add.go", changed)
	writeFile(t, plain, "docs/01-x.md", lesson)
	if out, err := exec.Command("git", "-C", plain, "rev-parse", "--git-dir").CombinedOutput(); err == nil {
		t.Logf("the temporary folder is inside a git repository (%s): that case is not played", strings.TrimSpace(string(out)))
	} else {
		r := checkQuotes(t, plain, false)
		assert.Len(t, r.failures, 1, "no git")
		assert.Empty(t, r.skipped, "no git")
	}
}

// git runs git in dir, as a learner with a name and an address.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Learner", "-c", "user.email=learner@example.com"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %s: %s", strings.Join(args, " "), out)
}

func writeFile(t *testing.T, dir, name, text string) {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(name))
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
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

// sourceLines returns the lines of data, the contents of file, or of one
// declaration in it (with its doc comment) when symbol is given: "Name" for
// a function, type, variable or constant, "Type.Method" for a method.
func sourceLines(file string, data []byte, symbol string) ([]string, error) {
	lines := strings.Split(string(data), "\n")
	if symbol == "" {
		return lines, nil
	}
	if !strings.HasSuffix(file, ".go") {
		return nil, fmt.Errorf("a symbol can only be named in a .go file")
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, data, parser.ParseComments)
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
