package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The table's words on how each client shares connections must stay true
// to the code: each stage names the phrases of its files they come from.
func TestSharingWordsComeFromTheCode(t *testing.T) {
	var names []string
	for _, s := range stages {
		names = append(names, s.name)
		require.NotEmpty(t, s.quotes, "%s: no phrase of its code backs its words", s.name)
		for _, q := range s.quotes {
			src, err := os.ReadFile(filepath.Join("..", "..", "..", s.name, q.file))
			require.NoError(t, err)
			assert.Contains(t, string(src), q.phrase, "%s/%s no longer says this: check the words %q", s.name, q.file, s.sharing)
		}
	}
	assert.Equal(t, []string{"01-http-add", "02-json-tcp", "03-custom-protocol", "04-gob-binary", "05-async-callback", "06-wsgi-router", "07-at-most-once"}, names)
}

// Every stage's server prints the line startServer waits for.
func TestEveryServerPrintsItsAddress(t *testing.T) {
	for _, s := range stages {
		src, err := os.ReadFile(filepath.Join("..", "..", "..", s.name, "cmd", "server", "main.go"))
		require.NoError(t, err)
		assert.Contains(t, string(src), `fmt.Fprintf(stdout, "listening on %s\n", l.Addr())`, s.name)
	}
}
