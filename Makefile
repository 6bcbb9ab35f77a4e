# linkbeat: see README.md. Every target installs what it needs on Debian.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/linkbeat/linkbeat/internal/buildinfo.Version=$(VERSION)
BIN       := bin/linkbeat

.PHONY: all deps build run generate check-generate lint vulncheck fuzz test test-unit test-host clean
all: build

deps:
	scripts/install-deps.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/linkbeat

# The main job: the daemon with its embedded defaults.
run: deps build
	./$(BIN) run

# Regenerates gen/ from bpf/ (needs clang and llvm-strip). bpf2go writes into
# a temporary directory; gen/ changes only when every object built, so a
# failed build never deletes committed output.
generate:
	scripts/install-deps.sh generate
	scripts/generate.sh

# CI: the committed bpf2go output must be what the sources produce.
check-generate: generate
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo "gen/ has untracked output: run 'make generate' and commit it" >&2; exit 1; }

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./cmd/... ./internal/... ./gen/...
	$(GO) tool staticcheck ./...

# Known vulnerabilities in the dependencies and the standard library, from
# the Go vulnerability database (VULNDB: e.g. file:///path/to/db for a
# mirror). Not part of lint yet: this machine cannot reach vuln.go.dev.
VULNDB ?= https://vuln.go.dev
vulncheck:
	$(GO) tool govulncheck -db $(VULNDB) ./...

# Each fuzz target for FUZZTIME, one after the other, from the committed
# corpus (testdata/fuzz); a failing input is written there to commit.
FUZZTIME ?= 10s
FUZZ_TARGETS := internal/config:FuzzParse internal/carrier:FuzzDecodeEvent internal/carrier:FuzzEventRoundTrip \
	internal/routes:FuzzRouteSnapshot internal/routes:FuzzDecodeRouteMessage
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} (./$${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}; \
	done

# Unit tests need no root. -race needs cgo; the binary stays static.
test-unit: deps
	CGO_ENABLED=1 $(GO) test -race -count=1 ./internal/... ./cmd/...

# Privileged tests in throwaway network namespaces on this host.
test-host: deps build
	LINKBEAT_BIN=$(CURDIR)/$(BIN) CGO_ENABLED=1 $(GO) test -race -v -count=1 -timeout 10m ./test/host/...

include test/vm/vm.mk

test: lint test-unit test-host test-deploy fuzz soak-short test-vm bench-quick

clean:
	rm -rf bin

# Benchmarks (issue 7, test/bench): the host scenarios natively in netns,
# the VM scenarios under QEMU (test/vm/vm.mk), then bench/REPORT.md and its
# SVG plots from this run's results files. See docs/bench.md.
BENCH_QUICK_DIR := bench/quick
.PHONY: bench bench-quick bench-deps
bench-deps:
	scripts/install-deps.sh bench

bench: bench-deps build
	@since=$$(date -u +%Y-%m-%dT%H:%M:%SZ) && \
	LINKBEAT_BIN=$(CURDIR)/$(BIN) $(GO) run ./test/bench/host -out bench/results && \
	$(MAKE) bench-vm BENCH_OUT=bench/results && \
	$(GO) run ./test/bench/report -out bench -since $$since bench/results

# A few trials of everything, into the uncommitted $(BENCH_QUICK_DIR): checks
# that every scenario still produces whole, sound figures (every planned
# trial, no failed one, correctness figures 1), never how fast.
bench-quick: bench-deps build
	$(GO) test -count=1 ./test/bench/...
	rm -rf $(BENCH_QUICK_DIR)
	LINKBEAT_BIN=$(CURDIR)/$(BIN) $(GO) run ./test/bench/host -quick -out $(BENCH_QUICK_DIR)
	$(MAKE) bench-vm-quick BENCH_OUT=$(BENCH_QUICK_DIR)
	$(GO) run ./test/bench/report -out $(BENCH_QUICK_DIR) -check $(BENCH_QUICK_DIR)

# Soak (test/soak): one daemon under random faults for DURATION, sampled
# every SOAK_INTERVAL; prints the samples and fails on growth after warm-up.
# go test's own timeout is off (DURATION varies); the test has a watchdog.
DURATION      ?= 10m
SOAK_INTERVAL ?= 10s
.PHONY: soak soak-short
soak: deps build
	LINKBEAT_BIN=$(CURDIR)/$(BIN) $(GO) test -v -count=1 -timeout 0 ./test/soak/ -soak.duration=$(DURATION) -soak.interval=$(SOAK_INTERVAL)

# The 60 s version for `make test`: samples every 5 s, to have enough of them.
soak-short:
	$(MAKE) soak DURATION=60s SOAK_INTERVAL=5s

# Installs the binary, the systemd unit, the commented example config and,
# unless one is there already, a config that is the embedded defaults, so
# the unit starts as installed (docs/deploy.md). DESTDIR stages a package
# root.
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
UNITFILE   ?= deploy/systemd/linkbeat.service

.PHONY: install test-deploy
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/linkbeat
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -E '/^Exec/ s#([=[:space:]@!:+-])/[^[:space:]]*/s?bin/linkbeat([[:space:]]|$$)#\1$(PREFIX)/bin/linkbeat\2#g' $(UNITFILE) > $(DESTDIR)$(UNITDIR)/linkbeat.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/linkbeat.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/linkbeat.service.tmp $(DESTDIR)$(UNITDIR)/linkbeat.service
	install -D -m 0644 deploy/systemd/linkbeat.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/linkbeat.conf
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/linkbeat
	install -m 0644 docs/linkbeat.example.yaml $(DESTDIR)$(SYSCONFDIR)/linkbeat/linkbeat.example.yaml
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/linkbeat/linkbeat.yaml ]; then \
		echo "install: kept the existing $(DESTDIR)$(SYSCONFDIR)/linkbeat/linkbeat.yaml"; \
	else \
		echo "install -m 0644 deploy/linkbeat.yaml $(DESTDIR)$(SYSCONFDIR)/linkbeat/linkbeat.yaml"; \
		install -m 0644 deploy/linkbeat.yaml $(DESTDIR)$(SYSCONFDIR)/linkbeat/linkbeat.yaml; \
	fi
	@[ -n "$(DESTDIR)" ] || echo "install: now run systemd-sysusers and systemctl daemon-reload, then systemctl enable --now linkbeat"

# Container, Kubernetes, Grafana, Prometheus rules and `make install`
# checks (test/deploy); they need root and promtool.
test-deploy: deps
	$(GO) test -count=1 ./test/deploy/...
