package lessoncheck

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rpc-from-scratch/course/internal/rpctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A lesson's figures about its diff come from make diff, and say so with a
// marker, an HTML comment that the rendered page does not show. A block of
// output is preceded by the commands that print it, one or more, joined
// with "; ":
//
//	<!-- output: make diff FROM=04 TO=05 CODE=1 SUMMARY=1 -->
//	```text
//	308	115	{04-gob-binary => 05-async-callback}/client.go
//	...
//	```
//
// A number in the prose is followed at once by a marker that names what it
// counts and the command: lines counts the lines the command prints; files,
// added and deleted are the totals on the last line of a SUMMARY=1 run.
//
//	prints everything: 7,046<!-- lines: make diff FROM=04 TO=05 --> lines.
//	864<!-- added: make diff FROM=04 TO=05 CODE=1 SUMMARY=1 --> lines added
//
// TestDiffFigures runs each command and checks the figure; with -update
// (make golden) it writes the figures the commands give instead.
var (
	outputRE = regexp.MustCompile(`^<!-- output: (.+) -->$`)
	figureRE = regexp.MustCompile(`(\d[\d,]*)<!-- (lines|files|added|deleted): ([^>]+?) -->`)
	diffRE   = regexp.MustCompile(`^make diff FROM=(\d\d) TO=(\d\d)( CODE=1)?( SUMMARY=1)?$`)
	totalsRE = regexp.MustCompile(`^(\d+) files, \+(\d+) -(\d+)$`)
)

// TestDiffFigures checks every figure that a markdown file takes from make
// diff against what make diff prints now.
//
// A learner doing the exercises changes the stages, and with them what
// make diff prints: as with quotes (see TestQuotedCode), a figure about
// stages that differ from the course's commit is skipped with a message
// saying so, unless RPC_LESSONCHECK=strict, as in CI. -update leaves it
// alone too: a learner's make golden rewrites their golden files, not the
// lessons.
func TestDiffFigures(t *testing.T) {
	root := root(t)
	strict := os.Getenv("RPC_LESSONCHECK") == "strict"
	if _, err := exec.LookPath("make"); err != nil {
		if strict {
			t.Fatal("make is not on PATH, and RPC_LESSONCHECK=strict: the figures taken from make diff cannot be checked")
		}
		t.Skip("make is not on PATH: the figures taken from make diff are not checked (RPC_LESSONCHECK=strict makes this a failure)")
	}
	r := checkDiffFigures(t, root, strict, rpctest.Updating())
	require.NotZero(t, r.files, "no lesson takes a figure from make diff: is the marker convention still in use?")
	for _, f := range r.failures {
		t.Error(f)
	}
	if len(r.skipped) > 0 {
		// After an Error above, the test still fails: a skip does not undo it.
		t.Skip(strings.Join(r.skipped, "\n"))
	}
}

// diffFigures is what checkDiffFigures found.
type diffFigures struct {
	files    int      // markdown files with figures from make diff
	failures []string // figures that are wrong, one message each
	skipped  []string // figures about stages the learner changed
}

// checkDiffFigures checks the figures from make diff in every markdown file
// under root. Unless strict, a figure about a stage that differs from the
// course's commit is skipped. With update, it writes the figures it checks
// as make diff gives them now instead, and reports no failure.
func checkDiffFigures(t *testing.T, root string, strict, update bool) diffFigures {
	t.Helper()
	run := makeDiff(t, root)
	if !strict {
		run = unlessChanged(findCourseBase(root), run)
	}
	var r diffFigures
	for _, path := range markdownFiles(t, root) {
		d := readDoc(t, root, path)
		if !slices.ContainsFunc(d.lines, func(l string) bool {
			return outputRE.MatchString(strings.TrimSpace(l)) || figureRE.MatchString(l)
		}) {
			continue
		}
		r.files++
		found := checkFigures(d, run)
		r.skipped = append(r.skipped, found.skipped...)
		if !update {
			r.failures = append(r.failures, found.failures...)
		} else if len(found.failures) > 0 {
			require.NoError(t, os.WriteFile(filepath.Join(root, d.path), []byte(strings.Join(found.fixed, "\n")), 0o644))
			t.Logf("rewrote %s, where %d figures were out of date", d.path, len(found.failures))
		}
	}
	return r
}

// TestDiffFiguresOfALearner plays a learner on a small course of its own,
// two stages, the course's make diff (its Makefile and the scripts that
// target runs, diffScripts) and a lesson with a figure of their diff, in a
// git repository: the figure is checked while the stages are
// the course's, skipped once the learner changes one, committed or not,
// checked again in strict mode, left alone by -update, and rewritten by
// -update in strict mode.
func TestDiffFiguresOfALearner(t *testing.T) {
	for _, tool := range []string{"git", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH: the learner's repository cannot be played", tool)
		}
	}
	course := t.TempDir()
	git(t, course, "init", "-q", "-b", "main")
	for _, name := range diffScripts {
		copyFile(t, root(t), course, name)
	}
	writeFile(t, course, "01-a/README.md", "# 01\n")
	writeFile(t, course, "01-a/a.go", "package a\n")
	writeFile(t, course, "02-b/README.md", "# 02\n")
	writeFile(t, course, "02-b/a.go", "package a\n\nfunc f() {}\n")
	// Two lines added to a.go: the diff has 2 files, +2 -0.
	lesson := "# 02\n\n2<!-- added: make diff FROM=01 TO=02 CODE=1 SUMMARY=1 --> lines added.\n"
	writeFile(t, course, "docs/02-b.md", lesson)
	git(t, course, "add", ".")
	git(t, course, "commit", "-q", "-m", "the course")

	learner := t.TempDir()
	git(t, learner, "clone", "-q", course, ".")
	check := func(name string, strict bool, failures, skipped int) {
		t.Helper()
		r := checkDiffFigures(t, learner, strict, false)
		assert.Equal(t, 1, r.files, name)
		assert.Len(t, r.failures, failures, "%s: failures %q", name, r.failures)
		assert.Len(t, r.skipped, skipped, "%s: skipped %q", name, r.skipped)
	}
	check("as cloned", false, 0, 0)
	check("as cloned, strict", true, 0, 0)

	writeFile(t, learner, "02-b/a.go", "package a\n\nfunc f() {}\n\nfunc g() {}\n")
	check("changed", false, 0, 1)
	check("changed, strict", true, 1, 0)
	git(t, learner, "commit", "-q", "-a", "-m", "exercise 1")
	check("committed", false, 0, 1)
	check("committed, strict", true, 1, 0)

	checkDiffFigures(t, learner, false, true)
	data, err := os.ReadFile(filepath.Join(learner, "docs", "02-b.md"))
	require.NoError(t, err)
	assert.Equal(t, lesson, string(data), "-update, a learner's: the lesson is left alone")
	checkDiffFigures(t, learner, true, true)
	data, err = os.ReadFile(filepath.Join(learner, "docs", "02-b.md"))
	require.NoError(t, err)
	assert.Equal(t, strings.Replace(lesson, "2<!--", "4<!--", 1), string(data), "-update, strict")
	check("after -update, strict", true, 0, 0)
}

// diffScripts are the files that make diff runs, relative to the root: the
// lesson figures are counted by the very script a learner runs.
var diffScripts = []string{"Makefile", ".ci/diff", ".ci/lib.sh"}

// copyFile copies the file name, a slash-separated path, from the folder
// from to the folder to, with its permissions (a script stays executable).
func copyFile(t *testing.T, from, to, name string) {
	t.Helper()
	src := filepath.Join(from, filepath.FromSlash(name))
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	info, err := os.Stat(src)
	require.NoError(t, err)
	dst := filepath.Join(to, filepath.FromSlash(name))
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(t, os.WriteFile(dst, data, info.Mode().Perm()))
}

// diffRunner returns what a make diff command prints.
type diffRunner func(command string) (string, error)

// makeDiff returns a diffRunner that runs make diff in root, once for each
// command.
func makeDiff(t *testing.T, root string) diffRunner {
	// A make that runs go test passes its flags down through the
	// environment, and a sub-make would print "Entering directory": this
	// make is not a sub-make.
	var env []string
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES":
		default:
			env = append(env, kv)
		}
	}
	outputs := map[string]string{}
	return func(command string) (string, error) {
		if out, ok := outputs[command]; ok {
			return out, nil
		}
		m := diffRE.FindStringSubmatch(command)
		if m == nil { // checkFigures runs no other
			return "", fmt.Errorf("%q is not make diff", command)
		}
		// go test caches a passing run, keyed on the files the test
		// read; make reads them in another process, so read them here.
		for _, nn := range m[1:3] {
			for _, dir := range stageDirs(root, nn) {
				noteFiles(t, filepath.Join(root, dir))
			}
		}
		for _, name := range diffScripts {
			_, _ = os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		}
		args := append([]string{"-s", "--no-print-directory", "-C", root}, strings.Fields(command)[1:]...)
		cmd := exec.Command("make", args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%s: %v: %s", command, err, stderr.String())
		}
		outputs[command] = stdout.String()
		return stdout.String(), nil
	}
}

// stageDirs returns the folders of stage NN, relative to root: one, or
// none.
func stageDirs(root, nn string) []string {
	dirs, _ := filepath.Glob(filepath.Join(root, nn+"-*"))
	for i, dir := range dirs {
		dirs[i] = filepath.Base(dir)
	}
	return dirs
}

// noteFiles reads every file under dir, so that go test's cache knows the
// test depends on them.
func noteFiles(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_, err = os.ReadFile(path)
		}
		return err
	}))
}

// learnersStages is the error of a figure about stages the learner changed.
type learnersStages struct {
	changed []string // the stages' folders that differ from the base
	base    *courseBase
}

func (e *learnersStages) Error() string {
	return fmt.Sprintf("you changed %s since the course's commit %.12s (%s): "+
		"expected while you do the exercises, committed or not (RPC_LESSONCHECK=strict checks them, as CI does)",
		strings.Join(e.changed, " and "), e.base.commit, e.base.from)
}

// unlessChanged returns a diffRunner that fails with a *learnersStages for
// a command that compares a stage that differs from base, and runs the
// others with run.
func unlessChanged(base *courseBase, run diffRunner) diffRunner {
	changed := map[string]bool{} // stage folder -> whether it differs
	return func(command string) (string, error) {
		m := diffRE.FindStringSubmatch(command)
		if m == nil {
			return run(command)
		}
		var yours []string
		for _, dir := range slices.Concat(stageDirs(base.root, m[1]), stageDirs(base.root, m[2])) {
			c, ok := changed[dir]
			if !ok {
				c = base.changed(dir)
				changed[dir] = c
			}
			if c {
				yours = append(yours, dir)
			}
		}
		if len(yours) > 0 {
			return "", &learnersStages{changed: yours, base: base}
		}
		return run(command)
	}
}

// figureResult is what checkFigures found in one markdown file.
type figureResult struct {
	failures []string // figures that are wrong, one message each
	skipped  []string // figures about stages the learner changed
	fixed    []string // the file's lines, every figure as make diff gives it
}

// checkFigures checks the figures in d with run.
func checkFigures(d *doc, run diffRunner) figureResult {
	var r figureResult
	// The figures skipped, by command: the lines they are on, and why.
	var skippedCommands []string
	skippedAt, skippedWhy := map[string][]string{}, map[string]error{}
	fail := func(i int, format string, args ...any) {
		r.failures = append(r.failures, fmt.Sprintf("%s:%d: ", d.path, i+1)+fmt.Sprintf(format, args...)+
			"\nIf the stages changed, run `RPC_LESSONCHECK=strict go test ./internal/lessoncheck/ -update` and review the diff.")
	}
	// figure returns what kind counts in command's output, or false after
	// saying why there is no figure.
	figure := func(i int, kind, command string) (string, bool) {
		if !diffRE.MatchString(command) {
			fail(i, "%q is not a command this check runs: make diff FROM=NN TO=NN [CODE=1] [SUMMARY=1]", command)
			return "", false
		}
		out, err := run(command)
		var yours *learnersStages
		switch {
		case errors.As(err, &yours):
			if skippedWhy[command] == nil {
				skippedCommands = append(skippedCommands, command)
				skippedWhy[command] = err
			}
			if at := strconv.Itoa(i + 1); !slices.Contains(skippedAt[command], at) {
				skippedAt[command] = append(skippedAt[command], at)
			}
			return "", false
		case err != nil:
			fail(i, "%v", err)
			return "", false
		case kind == "output":
			return out, true
		case kind == "lines":
			return strconv.Itoa(strings.Count(out, "\n")), true
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		m := totalsRE.FindStringSubmatch(lines[len(lines)-1])
		if m == nil {
			fail(i, "%s: its last line is not \"N files, +A -D\" (does the command say SUMMARY=1?)", command)
			return "", false
		}
		return m[map[string]int{"files": 1, "added": 2, "deleted": 3}[kind]], true
	}

	for i := 0; i < len(d.lines); i++ {
		line := d.lines[i]
		if d.fenced[i] {
			r.fixed = append(r.fixed, line)
			continue
		}
		m := outputRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil { // a line of prose, with figures or not
			r.fixed = append(r.fixed, figureRE.ReplaceAllStringFunc(line, func(said string) string {
				f := figureRE.FindStringSubmatch(said)
				n, ok := figure(i, f[2], f[3])
				if !ok || strings.ReplaceAll(f[1], ",", "") == n {
					return said
				}
				fail(i, "says %s %s of `%s`, which gives %s now", f[1], f[2], f[3], n)
				k, _ := strconv.Atoi(n)
				return withCommas(k) + strings.TrimPrefix(said, f[1])
			}))
			continue
		}
		r.fixed = append(r.fixed, line)
		marker := i
		block, err := d.blockAfter(i)
		if err != nil {
			fail(marker, "output of %s: %v", m[1], err)
			continue
		}
		var want strings.Builder
		ok := true
		for _, command := range strings.Split(m[1], "; ") {
			out, ran := figure(marker, "output", command)
			want.WriteString(out)
			ok = ok && ran
		}
		// Copy up to the opening fence, then the block as it should be.
		for i++; !d.fenced[i]; i++ {
			r.fixed = append(r.fixed, d.lines[i])
		}
		r.fixed = append(r.fixed, d.lines[i])
		if got := strings.Join(block, "\n") + "\n"; ok && got != want.String() {
			fail(marker, "the block is not what %s prints now, which is:\n%s", m[1], want.String())
			indent := d.lines[i][:len(d.lines[i])-len(strings.TrimLeft(d.lines[i], " "))] // as blockAfter takes it off
			for l := range strings.SplitSeq(strings.TrimSuffix(want.String(), "\n"), "\n") {
				r.fixed = append(r.fixed, indent+l)
			}
		} else {
			r.fixed = append(r.fixed, d.lines[i+1:i+1+len(block)]...)
		}
		i += len(block) // the closing fence comes next, and is copied as any line
	}
	for _, command := range skippedCommands {
		r.skipped = append(r.skipped, fmt.Sprintf("%s: the figures of `%s` (lines %s): %v",
			d.path, command, strings.Join(skippedAt[command], ", "), skippedWhy[command]))
	}
	return r
}

// withCommas spells n as the prose does: 7,046.
func withCommas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestCheckFigures checks the figures of a made-up lesson against made-up
// outputs: right ones pass, wrong ones fail, and the fix is the lesson with
// every figure right and nothing else changed.
func TestCheckFigures(t *testing.T) {
	outputs := map[string]string{
		"make diff FROM=04 TO=05":                  strings.Repeat("-\n", 1234),
		"make diff FROM=04 TO=05 CODE=1 SUMMARY=1": "30\t8\ta.go\n2\t2\tb.go\n2 files, +32 -10\n",
		"make diff FROM=01 TO=05 CODE=1 SUMMARY=1": "5\t0\tc.go\n1 files, +5 -0\n",
		"make diff FROM=03 TO=04":                  "-\n-\n-\n",
	}
	run := func(command string) (string, error) {
		if out, ok := outputs[command]; ok {
			return out, nil
		}
		return "", fmt.Errorf("no output for %q", command)
	}
	right := strings.Join([]string{
		"# Stage 05",
		"",
		"<!-- output: make diff FROM=04 TO=05 CODE=1 SUMMARY=1; make diff FROM=01 TO=05 CODE=1 SUMMARY=1 -->",
		"```text",
		"30\t8\ta.go",
		"2\t2\tb.go",
		"2 files, +32 -10",
		"5\t0\tc.go",
		"1 files, +5 -0",
		"```",
		"",
		"32<!-- added: make diff FROM=04 TO=05 CODE=1 SUMMARY=1 --> added and 10<!-- deleted: make diff FROM=04 TO=05 CODE=1 SUMMARY=1 --> removed,",
		"in 2<!-- files: make diff FROM=04 TO=05 CODE=1 SUMMARY=1 --> files; everything: 1,234<!-- lines: make diff FROM=04 TO=05 --> lines.",
		"```text",
		"9<!-- lines: make diff FROM=04 TO=05 --> in a code block is not a figure",
		"```",
		"",
	}, "\n")
	r := checkFigures(parseDoc("docs/05-x.md", right), run)
	assert.Empty(t, r.failures)
	assert.Empty(t, r.skipped)
	assert.Equal(t, right, strings.Join(r.fixed, "\n"))

	wrong := strings.NewReplacer(
		"2\t2\tb.go\n", "2\t3\tb.go\n9\t9\told.go\n", // a line more in the block
		"32<!-- added", "31<!-- added",
		"1,234<!--", "1,220<!--",
		"2<!-- files", "2<!-- files", // unchanged
	).Replace(right)
	r = checkFigures(parseDoc("docs/05-x.md", wrong), run)
	failures := r.failures
	if assert.Len(t, failures, 3, "%q", failures) {
		assert.Contains(t, failures[0], "docs/05-x.md:3: the block is not what make diff FROM=04 TO=05 CODE=1 SUMMARY=1; make diff FROM=01 TO=05 CODE=1 SUMMARY=1 prints now")
		assert.Contains(t, failures[1], "docs/05-x.md:13: says 31 added of `make diff FROM=04 TO=05 CODE=1 SUMMARY=1`, which gives 32 now")
		assert.Contains(t, failures[2], "docs/05-x.md:14: says 1,220 lines of `make diff FROM=04 TO=05`, which gives 1234 now")
	}
	assert.Equal(t, right, strings.Join(r.fixed, "\n"), "the fix")

	// A learner who changed stage 05 gets the figures about it skipped,
	// the others checked.
	base := &courseBase{commit: "0123456789abcdef", from: "where HEAD parts from origin/main"}
	learner := func(command string) (string, error) {
		if strings.Contains(command, "TO=05") {
			return "", &learnersStages{changed: []string{"05-x"}, base: base}
		}
		return run(command)
	}
	r = checkFigures(parseDoc("docs/05-x.md", wrong+"\n7<!-- lines: make diff FROM=03 TO=04 -->\n"), learner)
	if assert.Len(t, r.failures, 1, "%q", r.failures) {
		assert.Contains(t, r.failures[0], "says 7 lines of `make diff FROM=03 TO=04`, which gives 3 now")
	}
	assert.Equal(t, []string{
		"docs/05-x.md: the figures of `make diff FROM=04 TO=05 CODE=1 SUMMARY=1` (lines 3, 13, 14): " +
			"you changed 05-x since the course's commit 0123456789ab (where HEAD parts from origin/main): " +
			"expected while you do the exercises, committed or not (RPC_LESSONCHECK=strict checks them, as CI does)",
		"docs/05-x.md: the figures of `make diff FROM=01 TO=05 CODE=1 SUMMARY=1` (lines 3): " +
			"you changed 05-x since the course's commit 0123456789ab (where HEAD parts from origin/main): " +
			"expected while you do the exercises, committed or not (RPC_LESSONCHECK=strict checks them, as CI does)",
		"docs/05-x.md: the figures of `make diff FROM=04 TO=05` (lines 14): " +
			"you changed 05-x since the course's commit 0123456789ab (where HEAD parts from origin/main): " +
			"expected while you do the exercises, committed or not (RPC_LESSONCHECK=strict checks them, as CI does)",
	}, r.skipped)
	assert.Equal(t, wrong+"\n3<!-- lines: make diff FROM=03 TO=04 -->\n", strings.Join(r.fixed, "\n"), "skipped figures are left as they are")

	for _, bad := range []string{
		"7<!-- lines: make diff FROM=02 TO=03 -->",                    // no such output
		"7<!-- lines: rm -rf / -->",                                   // not a make diff
		"7<!-- added: make diff FROM=04 TO=05 -->",                    // no totals line
		"<!-- output: make diff FROM=04 TO=05 CODE=1 SUMMARY=1 -->\n", // no block
	} {
		r := checkFigures(parseDoc("docs/05-x.md", bad), run)
		assert.Len(t, r.failures, 1, "%q: %q", bad, r.failures)
		assert.Equal(t, bad, strings.Join(r.fixed, "\n"), "%q: left as it was", bad)
	}

	assert.Equal(t, "7", withCommas(7))
	assert.Equal(t, "864", withCommas(864))
	assert.Equal(t, "7,046", withCommas(7046))
	assert.Equal(t, "1,234,567", withCommas(1234567))
}
