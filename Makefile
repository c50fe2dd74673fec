# RPC from scratch, in six stages. `make help` lists the targets.

GO         ?= go
STAGES     := $(sort $(patsubst %/README.md,%,$(wildcard [0-9][0-9]-*/README.md)))
# A count of runs, not a duration: Go 1.26's fuzzer can fail a duration-bound
# run with a bare "context deadline exceeded" (go.dev/issue/75804, fixed in 1.27).
FUZZTIME   ?= 100000x
BENCHFLAGS ?=
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help test tour bench bench-wrk diff golden lint fuzz

help: ## list the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  make %-9s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

test: ## go vet, then every test with the race detector (lesson checks included)
	$(GO) vet ./...
	$(GO) vet -tags exercises ./...
	$(GO) test -race ./...

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
	@command -v wrk >/dev/null 2>&1 || { \
		echo "bench-wrk: wrk is not installed, so there is nothing to measure."; \
		echo "bench-wrk: on Debian or Ubuntu: sudo apt-get install wrk"; \
		exit 0; }; \
	set -e; mkdir -p bin; \
	$(GO) build -o bin/wsgi-server ./06-wsgi-router/cmd/server; \
	for flag in "" -stdlib; do \
		bin/wsgi-server -addr 127.0.0.1:0 $$flag >bin/wsgi-server.log 2>&1 & pid=$$!; \
		trap 'kill $$pid 2>/dev/null' EXIT; \
		addr=; for i in $$(seq 100); do \
			addr=$$(sed -n 's/^listening on //p' bin/wsgi-server.log); \
			test -n "$$addr" && break; sleep 0.1; \
		done; \
		test -n "$$addr" || { echo "bench-wrk: the server did not start:"; cat bin/wsgi-server.log; exit 1; }; \
		name=ours; test -z "$$flag" || name=net/http; \
		echo "== $$name: bin/wsgi-server $${flag:+$$flag }on $$addr"; \
		wrk -t2 -c64 -d5s "http://$$addr/add?a=1&b=2"; \
		kill $$pid; wait $$pid || true; trap - EXIT; echo; \
	done

diff: ## what changed from one stage to the next: make diff FROM=01 TO=02
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make diff FROM=01 TO=02" >&2; exit 2; }
	@from=$$(find . -maxdepth 1 -type d -name '$(FROM)-*' | sed 's|^\./||' | head -1); \
	to=$$(find . -maxdepth 1 -type d -name '$(TO)-*' | sed 's|^\./||' | head -1); \
	test -d "$$from" -a -d "$$to" || { echo "no stage $(FROM) or $(TO)" >&2; exit 2; }; \
	git diff --no-index --stat "$$from" "$$to"; \
	git diff --no-index --find-renames "$$from" "$$to"; \
	true

golden: ## rewrite every golden file; review the diff as you would review code
	$(GO) test ./... -update

lint: ## gofmt check, go vet, staticcheck (fetched through the module proxy)
	@unformatted=$$(gofmt -l .); \
	test -z "$$unformatted" || { echo "gofmt would change:"; echo "$$unformatted"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) ./...

fuzz: ## every fuzz target, FUZZTIME runs each (default 100000x)
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done
