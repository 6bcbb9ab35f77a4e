# linkbeat: see README.md. Every target installs what it needs on Debian.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/linkbeat/linkbeat/internal/buildinfo.Version=$(VERSION)
BIN       := bin/linkbeat

.PHONY: all deps build run generate check-generate lint test test-unit test-host clean
all: build

deps:
	scripts/install-deps.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/linkbeat

# The main job: the daemon with its embedded defaults.
run: deps build
	./$(BIN) run

# Regenerates gen/ from bpf/ (needs clang and llvm-strip).
generate:
	scripts/install-deps.sh generate
	cd gen && $(GO) generate ./...

# CI: the committed bpf2go output must be what the sources produce.
check-generate: generate
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run 'make generate' and commit the result" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- gen)" || { git status --porcelain -- gen; echo "gen/ has untracked output: run 'make generate' and commit it" >&2; exit 1; }

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Unit tests need no root.
test-unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

# Privileged tests in throwaway network namespaces on this host.
test-host: deps build
	LINKBEAT_BIN=$(CURDIR)/$(BIN) $(GO) test -v -count=1 -timeout 10m ./test/host/...

include test/vm/vm.mk

test: lint test-unit test-host test-vm

clean:
	rm -rf bin
