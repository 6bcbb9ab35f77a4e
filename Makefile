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

# The main job: the daemon with its embedded defaults. Running needs no
# package: only the tests install their tools (deps).
run: build
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

# Both modules: the daemon's (.) and the tests' and benchmarks' (test/).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	cd test && $(GO) mod tidy -diff
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...
	$(GO) tool staticcheck ./...
	cd test && $(GO) vet ./... && $(GO) vet -tags vmguest ./vm/guest/... && $(GO) tool staticcheck ./...

# Known vulnerabilities in what the binary links (the daemon's module) and
# in the test tooling, from the Go vulnerability database (VULNDB: e.g.
# file:///path/to/db for a mirror; .ci/run uses the snapshot in ../shared).
# Only findings in code the binary links fail; the test module's are shown.
VULNDB ?= https://vuln.go.dev
vulncheck:
	$(GO) tool govulncheck -db $(VULNDB) ./...
	cd test && $(GO) tool govulncheck -db $(VULNDB) ./... || echo "vulncheck: findings in the test tooling (test/go.mod) above: fix them, they do not reach the binary" >&2

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

# Privileged tests in throwaway network namespaces on this host, and the
# shared test tools' own tests (the drop programs need root to load).
test-host: deps build
	cd test && LINKBEAT_BIN=$(CURDIR)/$(BIN) CGO_ENABLED=1 $(GO) test -race -v -count=1 -timeout 10m ./host/... ./dropper/... ./testkit/...

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
	(cd test && LINKBEAT_BIN=$(CURDIR)/$(BIN) $(GO) run ./bench/host -out $(CURDIR)/bench/results) && \
	$(MAKE) bench-vm BENCH_OUT=bench/results && \
	(cd test && $(GO) run ./bench/report -out $(CURDIR)/bench -since $$since $(CURDIR)/bench/results)

# A few trials of everything, into the uncommitted $(BENCH_QUICK_DIR): checks
# that every scenario still produces whole, sound figures (every planned
# trial, no failed one, correctness figures 1), never how fast.
bench-quick: bench-deps build
	cd test && $(GO) test -count=1 ./bench/...
	rm -rf $(BENCH_QUICK_DIR)
	cd test && LINKBEAT_BIN=$(CURDIR)/$(BIN) $(GO) run ./bench/host -quick -out $(CURDIR)/$(BENCH_QUICK_DIR)
	$(MAKE) bench-vm-quick BENCH_OUT=$(BENCH_QUICK_DIR)
	cd test && $(GO) run ./bench/report -out $(CURDIR)/$(BENCH_QUICK_DIR) -check $(CURDIR)/$(BENCH_QUICK_DIR)

# Soak (test/soak): one daemon under random faults for DURATION, sampled
# every SOAK_INTERVAL; prints the samples and fails on growth after warm-up.
# go test's own timeout is off (DURATION varies); the test has a watchdog.
DURATION      ?= 10m
SOAK_INTERVAL ?= 10s
.PHONY: soak soak-short
soak: deps build
	cd test && LINKBEAT_BIN=$(CURDIR)/$(BIN) $(GO) test -v -count=1 -timeout 0 ./soak/ -soak.duration=$(DURATION) -soak.interval=$(SOAK_INTERVAL)

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

MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions

.PHONY: install test-deploy
install: build man completions
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
	install -D -m 0644 $(MANPAGE) $(DESTDIR)$(MANDIR)/man1/linkbeat.1
	install -D -m 0644 $(BASHCOMP) $(DESTDIR)$(BASHCOMPDIR)/linkbeat
	install -D -m 0644 $(ZSHCOMP) $(DESTDIR)$(ZSHCOMPDIR)/_linkbeat
	@[ -n "$(DESTDIR)" ] || echo "install: now run systemd-sysusers and systemctl daemon-reload, then systemctl enable --now linkbeat"

# Container, Kubernetes, Grafana, Prometheus rules and `make install`
# checks (test/deploy); they need root and promtool.
test-deploy: deps
	cd test && $(GO) test -count=1 ./deploy/...

# Man page and bash/zsh completions, generated from the CLI's kingpin model
# (--help-man, --completion-script-*), so they never drift from --help.
# Built next to BIN, by a binary for this machine whatever GOARCH says.
DOCDIR   ?= $(dir $(BIN))share
MANPAGE  := $(DOCDIR)/man/linkbeat.1
BASHCOMP := $(DOCDIR)/bash-completion/linkbeat
ZSHCOMP  := $(DOCDIR)/zsh/_linkbeat
DOCGEN   := env -u GOARCH -u GOOS CGO_ENABLED=0 $(GO) run ./cmd/linkbeat

.PHONY: man completions
man:
	@mkdir -p $(dir $(MANPAGE))
	$(DOCGEN) --help-man | sed -e '1s/^\.TH .*/.TH LINKBEAT 1 "" "linkbeat $(VERSION)" "linkbeat manual"/' \
		-e '/^\.SH "NAME"/{n;s/^linkbeat$$/linkbeat \\- eBPF-accelerated link monitor/;}' > $(MANPAGE).tmp
	mv -f $(MANPAGE).tmp $(MANPAGE)

completions:
	@mkdir -p $(dir $(BASHCOMP)) $(dir $(ZSHCOMP))
	$(DOCGEN) --completion-script-bash > $(BASHCOMP).tmp && mv -f $(BASHCOMP).tmp $(BASHCOMP)
	$(DOCGEN) --completion-script-zsh > $(ZSHCOMP).tmp && mv -f $(ZSHCOMP).tmp $(ZSHCOMP)

# Debian package (packaging/nfpm.yaml) for DEB_ARCH: what `make install`
# stages with PREFIX=/usr, packed by nfpm (a Go tool, packaging/go.mod), so
# building it needs no Debian package. Debian versions must start with a
# digit: v1.2.3-4-gabc becomes 1.2.3+4.gabc, an untagged tree 0.0.0~git<rev>.
DEB_ARCH    ?= $(shell env -u GOARCH $(GO) env GOARCH)
DEB_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v//; s/-([0-9]+)-g([0-9a-f]+)/+\1.g\2/; s/-dirty$$/~dirty/; /^[0-9]+\.[0-9]+/!s/^/0.0.0~git/')
DEB_DIR     ?= bin
DEB_STAGE   := bin/deb-$(DEB_ARCH)
DEB         := $(DEB_DIR)/linkbeat_$(DEB_VERSION)_$(DEB_ARCH).deb

# test/deploy's package test needs dpkg and man besides deps' tools.
test-deploy: package-deps
.PHONY: package-deps
package-deps:
	scripts/install-deps.sh package

.PHONY: deb
deb:
	rm -rf $(DEB_STAGE)
	GOARCH=$(DEB_ARCH) $(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DEB_STAGE)/root PREFIX=/usr SYSCONFDIR=/etc \
		ZSHCOMPDIR=/usr/share/zsh/vendor-completions BIN=$(DEB_STAGE)/linkbeat
	@mkdir -p $(DEB_DIR)
	LINKBEAT_STAGE=$(CURDIR)/$(DEB_STAGE)/root LINKBEAT_ARCH=$(DEB_ARCH) LINKBEAT_VERSION=$(DEB_VERSION) \
		env -u GOARCH -u GOOS $(GO) tool -modfile=packaging/go.mod nfpm pkg --packager deb --config packaging/nfpm.yaml --target $(DEB)
	@echo "deb: $(DEB)"

# Release artefacts in RELEASE_DIR, per architecture: a static tarball
# (binary, man page, completions, unit, sysusers, configs, licence) and the
# .deb, with their SHA-256 sums. Tag first (git tag v1.2.3): VERSION is
# `git describe`.
RELEASE_ARCHES ?= amd64 arm64
RELEASE_DIR    ?= dist

.PHONY: release
release: man completions
	rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	@set -e; for arch in $(RELEASE_ARCHES); do \
		d=$(RELEASE_DIR)/linkbeat-$(VERSION).linux-$$arch; \
		echo "release: $$d.tar.gz"; \
		mkdir -p $$d/systemd $$d/completions; \
		GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$d/linkbeat ./cmd/linkbeat; \
		cp $(MANPAGE) $$d/linkbeat.1; \
		cp $(BASHCOMP) $$d/completions/linkbeat.bash; \
		cp $(ZSHCOMP) $$d/completions/_linkbeat; \
		cp deploy/systemd/linkbeat.service deploy/systemd/linkbeat.sysusers $$d/systemd/; \
		cp deploy/linkbeat.yaml $$d/linkbeat.yaml; \
		cp docs/linkbeat.example.yaml $$d/linkbeat.example.yaml; \
		cp -r LICENSE LICENSES README.md $$d/; \
		tar -C $(RELEASE_DIR) --sort=name --owner=0 --group=0 --numeric-owner \
			--mtime="@$$(git log -1 --format=%ct 2>/dev/null || echo 0)" -czf $$d.tar.gz $$(basename $$d); \
		rm -rf $$d; \
		$(MAKE) --no-print-directory deb DEB_ARCH=$$arch DEB_DIR=$(RELEASE_DIR); \
	done
	cd $(RELEASE_DIR) && sha256sum *.tar.gz *.deb > sha256sums.txt
	@cat $(RELEASE_DIR)/sha256sums.txt

clean: clean-release
.PHONY: clean-release
clean-release:
	rm -rf $(RELEASE_DIR)

# The monitoring mixin (deploy/mixin, jsonnet as node-mixin): writes its
# alerts to deploy/prometheus/rules.yml, which is committed for those who
# load plain rules; test/deploy checks that the two agree.
MIXIN_OUT ?= deploy/prometheus/rules.yml
JSONNET   := env -u GOARCH -u GOOS $(GO) tool -modfile=packaging/go.mod jsonnet

.PHONY: mixin
mixin:
	{ echo '# GENERATED by `make mixin` from deploy/mixin/*.libsonnet: edit there, not here.'; \
	  echo '# Alerts for linkbeat (docs/deploy.md#prometheus-alerts, runbooks in docs/runbooks.md).'; \
	  echo '# They select job="linkbeat"; for another selector build the mixin with'; \
	  echo '# _config+:: { linkbeatSelector: ... } (deploy/mixin/config.libsonnet).'; \
	  $(JSONNET) -S -e 'std.manifestYamlDoc((import "deploy/mixin/mixin.libsonnet").prometheusAlerts, indent_array_in_object=true, quote_keys=false)'; \
	} > $(MIXIN_OUT).tmp
	mv -f $(MIXIN_OUT).tmp $(MIXIN_OUT)
