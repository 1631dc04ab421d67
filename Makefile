# cosmoslease — every target installs what it needs.
GO        ?= go
SERVERDIR := testdata/cosmosdb-server
SERVERMOD := $(SERVERDIR)/node_modules/.package-lock.json
SAMPLEDIR := testdata/cosmos-sample
SAMPLEMOD := $(SAMPLEDIR)/node_modules/.package-lock.json

.PHONY: test test-short test-deps fmt vet cross demo server build package chaos bench sim sim-mutants clean

## demo: the reference sample's scenarios on this machine, no Azure account needed, then four it cannot show (a paused
## holder fenced off; the Functions handler in three regions: failover and handback of scheduled work; a job of your
## own under `run -- COMMAND` failing over only once the first one's process group is gone; pause, trigger and resume
## of the scheduled job in three regions).
demo: test-deps build
	$(GO) run ./tools/demo -bin bin/cosmoslease

## server: the local Cosmos-protocol server with the lease database and container, until Ctrl-C; prints the endpoint
## and the run, inspect and cron lines to paste into other terminals. PORT=0 takes any free port.
PORT ?= 8081
server: test-deps build
	$(GO) build -o bin/devserver ./tools/devserver
	bin/devserver -port $(PORT) -bin bin/cosmoslease

## package: deployable Function App zips in dist/ (linux/amd64 for Flex Consumption, windows/amd64).
package:
	$(GO) run ./tools/package -out dist

## chaos: a long chaos run (at least 10,000 acquisitions) against the local server; see docs/reliability.md.
chaos: test-deps build
	mkdir -p dist
	$(GO) run ./tools/chaos -bin bin/cosmoslease -duration 25m -keys 12 -contenders 3 -events dist/chaos-events.jsonl -min-acquisitions 10000

## sim: the deterministic simulator (internal/sim) for longer than go test runs it: SEEDS seeds from FIRST (the
## costliest started first), DURATION of virtual time each, with progress and a summary of the faults; a failure
## prints its seed and the command that replays it (see docs/reliability.md). SEED=N replays one seed, on one
## processor (GOMAXPROCS=1), which replays best; pass the DURATION the failure names.
SEEDS    ?= 200
FIRST    ?= 1
DURATION ?= 6h
sim:
	$(if $(SEED),GOMAXPROCS=1) $(GO) test ./internal/sim -run 'TestSim$$' -count=1 -timeout 0 -v -args -progress -seeds $(SEEDS) -first $(FIRST) -duration $(DURATION) $(if $(SEED),-seed $(SEED))

## sim-mutants: apply known-wrong changes to the lease, the fence, the store and the occurrence election (issue 23's
## fixes reverted among them) one at a time (go test -overlay; the tree is never edited) and show that the
## simulator's default budget (go test ./internal/sim: its seeds, then its regression scenarios) catches each,
## with the seed or scenario and the checks that failed; it exits non-zero if one is missed.
sim-mutants:
	$(GO) run ./tools/simmutants

## bench: benchmarks against the local server; writes docs/benchmarks.md and the plots beside it.
bench: test-deps build
	$(GO) run ./tools/bench -bin bin/cosmoslease -out docs

## build: the CLI into bin/.
build:
	$(GO) build -o bin/cosmoslease ./cmd/cosmoslease

## test: install the test server, check formatting, run every test with the race detector, then vet.
## Cross-compilation (make cross) is a step of its own, after it in CI.
test: test-deps fmt
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) vet ./...

## test-short: the edit-test loop: every test but the long end-to-end runs (demo, chaos, processes on the real
## clock, js/wasm under node), without the race detector.
test-short: test-deps fmt
	$(GO) test -short -count=1 ./...

## test-deps: Go modules, the pinned Cosmos-protocol server and the official JavaScript SDK that the reference
## sample's contender uses (each from its lock file).
test-deps: $(SERVERMOD) $(SAMPLEMOD)
	$(GO) mod download

$(SERVERMOD): $(SERVERDIR)/package.json $(SERVERDIR)/package-lock.json
	cd $(SERVERDIR) && npm ci --no-audit --no-fund --loglevel=error

$(SAMPLEMOD): $(SAMPLEDIR)/package.json $(SAMPLEDIR)/package-lock.json
	cd $(SAMPLEDIR) && npm ci --no-audit --no-fund --loglevel=error

fmt:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './$(SERVERDIR)/*'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

vet: fmt
	$(GO) vet ./...

## cross: the library must stay usable from WebAssembly hosts (js/wasm with its fetch transport, the example;
## wasip1, whose host passes Options.Transport); the CLI and the handler build for every platform people run
## them on.
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
cross:
	GOOS=js GOARCH=wasm $(GO) build ./pkg/... ./examples/...
	GOOS=wasip1 GOARCH=wasm $(GO) build ./pkg/...
	@for p in $(PLATFORMS); do \
	  echo "GOOS=$${p%/*} GOARCH=$${p#*/} go build ./cmd/cosmoslease ./functions/leasehandler"; \
	  GOOS=$${p%/*} GOARCH=$${p#*/} CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/cosmoslease || exit 1; \
	  GOOS=$${p%/*} GOARCH=$${p#*/} CGO_ENABLED=0 $(GO) build -o /dev/null ./functions/leasehandler || exit 1; \
	done

clean:
	rm -rf bin dist $(SERVERDIR)/node_modules $(SAMPLEDIR)/node_modules
