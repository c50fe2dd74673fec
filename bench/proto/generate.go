// Package proto holds the gRPC peer's service definition, bench.proto, and
// the go:generate line that turns it into the Go code in benchpb. The
// generated code is committed, so building the benchmarks needs no protoc.
package proto

// protoc 3.21.12 (Debian bookworm's protobuf-compiler), with the plugins
// installed by:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
//
//go:generate protoc --go_out=benchpb --go_opt=paths=source_relative --go-grpc_out=benchpb --go-grpc_opt=paths=source_relative bench.proto
