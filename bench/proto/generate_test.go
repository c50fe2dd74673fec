package proto

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGeneratedCodeIsCurrent runs protoc as go:generate does, into a
// temporary folder, and compares what it writes with the committed code:
// an edit to bench.proto without go generate, or a hand edit to the
// generated files, fails here. It needs protoc and the two plugins; without
// them it skips, unless RPC_PROTOC=required (CI sets it), where a skip
// would hide the check.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	for _, tool := range []string{"protoc", "protoc-gen-go", "protoc-gen-go-grpc"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("RPC_PROTOC") == "required" {
				t.Fatalf("%s is not on PATH, and RPC_PROTOC=required: see bench/README.md to install it", tool)
			}
			t.Skipf("%s is not on PATH: the check of the generated code needs it (see bench/README.md)", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("protoc", "--go_out="+out, "--go_opt=paths=source_relative",
		"--go-grpc_out="+out, "--go-grpc_opt=paths=source_relative", "bench.proto")
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "protoc: %s", msg)
	for _, name := range []string{"bench.pb.go", "bench_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(out, name))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join("benchpb", name))
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "benchpb/%s is not what protoc writes from bench.proto: run go generate ./proto in bench/", name)
	}
}
