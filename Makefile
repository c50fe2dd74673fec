# RPC from scratch, in six stages. `make help` lists the targets.

GO         ?= go
STAGES     := $(sort $(patsubst %/README.md,%,$(wildcard [0-9][0-9]-*/README.md)))
# A count of runs, not a duration: Go 1.26's fuzzer can fail a duration-bound
# run with a bare "context deadline exceeded" (go.dev/issue/75804, fixed in 1.27).
FUZZTIME   ?= 100000x
# How many seeded fault schedules make fuzz runs through stage 07.
SEEDS      ?= 2000
BENCHFLAGS ?=
# How many times make bench-report runs each benchmark: benchstat wants 6 or more.
BENCHCOUNT ?= 6
LOADFLAGS  ?=
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help test exercise solutions tour bench bench-wrk bench-check bench-report bench-page bench-load diff golden lint fuzz

help: ## list the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  make %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# The race detector sleeps a second before a program built with -race exits,
# for races that goroutines still running could report. Every package's
# tests end by checking that no goroutine is left (goleak), so make test
# skips that second, once for each of the 24 test binaries and for each
# server that the command tests start. GORACE=atexit_sleep_ms=1000 restores it.
GORACE ?= atexit_sleep_ms=0
export GORACE

# One go vet, with the exercises' tag: it vets every file the untagged vet
# would (no file is built only without the tag; lessoncheck checks that),
# and the exercises' tests too.
test: ## go vet (the exercises' tests included), then every test with the race detector (lesson checks included)
	$(GO) vet -tags exercises ./...
	$(GO) test -race ./...

exercise: ## one stage's exercises, each solved or not yet: make exercise STAGE=01
	@GO='$(GO)' .ci/exercise '$(STAGE)'

solutions: ## apply each stage's solution patches to a copy of the tree and test them (STAGE=01 for one)
	.ci/solutions $(STAGE)

tour: ## run every stage's demo, with -trace, against a server in the same process
	@set -e; for stage in $(STAGES); do \
		printf '\n======== %s ========\n\n' "$$(sed -n '1s/^# //p' $$stage/README.md)"; \
		$(GO) run ./$$stage/cmd/client -trace; \
	done

bench: ## every stage's benchmarks, with allocations, each stage's into bench-NN.txt (BENCHFLAGS="-count 6" for benchstat)
	@set -e; for stage in $(STAGES); do \
		n=$${stage%%-*}; \
		echo "$(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) ./$$stage/ | tee bench-$$n.txt"; \
		$(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) ./$$stage/ | tee bench-$$n.txt; \
	done

bench-wrk: ## stage 06's server under wrk -t2 -c64 -d5s, then net/http's with the same application (-stdlib)
	@GO='$(GO)' .ci/bench-wrk

bench-check: ## the bench/ module (its own go.mod): vet, tidy, staticcheck, its tests, and every benchmark once
	cd bench && $(GO) vet ./...
	cd bench && $(GO) mod tidy -diff
	cd bench && $(GO) run $(STATICCHECK) ./...
	cd bench && $(GO) test -race ./...
	cd bench && $(GO) test -run '^$$' -bench . -benchmem -benchtime 1x .

bench-report: ## every stage, the floor, net/rpc, jsonrpc, net/http and gRPC in one run: writes docs/benchmarks.md (about 10 minutes)
	@GO='$(GO)' BENCHCOUNT='$(BENCHCOUNT)' .ci/bench-report

bench-page: ## write docs/benchmarks.md and its chart again from bench/results/raw.txt, without running anything
	cd bench && $(GO) run ./cmd/report -raw results/raw.txt -page ../docs/benchmarks.md -svg ../docs/img/benchmarks.svg

bench-load: ## each stage's server under its client's load mode, and wrk where installed: appends to docs/benchmarks.md
	cd bench && $(GO) run ./cmd/load -page ../docs/benchmarks.md $(LOADFLAGS)

diff: ## what changed from one stage to the next (solutions/ left out): make diff FROM=01 TO=02 [CODE=1] [SUMMARY=1]
	@CODE='$(CODE)' SUMMARY='$(SUMMARY)' .ci/diff '$(FROM)' '$(TO)'

golden: ## rewrite every golden file; review the diff as you would review code
	$(GO) test ./... -update

# shellcheck is not a Go module: where it is missing, lint says so and goes
# on, unless RPC_SHELLCHECK=required (as .ci/run sets, having installed it).
lint: ## gofmt check, go vet, go mod tidy, staticcheck (fetched through the module proxy), shellcheck on .ci/
	@unformatted=$$(gofmt -l .); \
	test -z "$$unformatted" || { echo "gofmt would change:"; echo "$$unformatted"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) ./...
	@if command -v shellcheck >/dev/null; then \
		echo "shellcheck -x .ci/*"; shellcheck -x .ci/*; \
	elif test "$$RPC_SHELLCHECK" = required; then \
		echo "lint: shellcheck is not installed, and RPC_SHELLCHECK=required" >&2; exit 1; \
	else \
		echo "lint: shellcheck is not installed, so the scripts under .ci/ are not checked (on Debian or Ubuntu: sudo apt-get install shellcheck)"; \
	fi

fuzz: ## every fuzz target, FUZZTIME runs each (default 100000x), and SEEDS of stage 07's fault schedules (default 2000)
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done
	@echo "stage 07's fault schedules, seeds 1 to $(SEEDS) (make test tries 200)"
	$(GO) test -run '^TestNoCallRunsTwice$$' ./07-at-most-once/ -seeds $(SEEDS)
