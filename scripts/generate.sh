#!/bin/sh
# Runs gen/gen.go's go:generate lines with bpf2go writing into a temporary
# directory, then replaces gen/'s generated files with the result. Nothing in
# gen/ changes unless every object built.
set -eu
cd "$(dirname "$0")/../gen"
GO=${GO:-go}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/linkbeat-gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
BPF2GO_OUT=$tmp $GO generate ./...
ls "$tmp"/*_bpfel.go "$tmp"/*_bpfel.o >/dev/null
rm -f ./*_bpfel.go ./*_bpfel.o
mv "$tmp"/*_bpfel.go "$tmp"/*_bpfel.o .
