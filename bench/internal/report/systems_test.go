package report

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rpc-from-scratch/course/bench"
)

// TestSystemsMatchTheBenchmarks checks the page's order and notes against
// the systems the benchmarks run, so that a system added there cannot be
// left out of the page or put in the wrong place.
func TestSystemsMatchTheBenchmarks(t *testing.T) {
	var names []string
	for _, sys := range bench.Systems() {
		names = append(names, sys.Name)
		assert.Contains(t, systemNotes, sys.Name, "systemNotes has no line for %s", sys.Name)
	}
	assert.Equal(t, names, Systems, "the page's order (Systems) and the benchmarks' (bench.Systems)")
	assert.Len(t, systemNotes, len(names), "systemNotes has a line for a system the benchmarks do not run")
}
