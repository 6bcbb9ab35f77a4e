// Package gen holds the bpf2go output for linkbeat's BPF programs. The
// generated .go and .o files are committed, so building needs no clang;
// `make generate` rebuilds them and CI fails if that changes anything.
//
// Each object is built per architecture: bpf2go defines __TARGET_ARCH_x86
// or __TARGET_ARCH_arm64, which BPF_KPROBE needs to read the right
// registers. `make generate` sets BPF2GO_OUT to a temporary directory and
// moves the output here only when every object built, so a failed build
// never deletes committed output.
package gen

//go:generate go tool bpf2go -output-dir=$BPF2GO_OUT -go-package gen -target amd64,arm64 -tags linux -type carrier_event -type carrier_source Carrier ../bpf/carrier.c -- -I../bpf -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -output-dir=$BPF2GO_OUT -go-package gen -target amd64,arm64 -tags linux -type if_counters Traffic ../bpf/traffic.c -- -I../bpf -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -output-dir=$BPF2GO_OUT -go-package gen -target amd64,arm64 -tags linux -type fp_bond -type fp_slave -type fp_redirect -type fp_stats Fastpath ../bpf/fastpath.c -- -I../bpf -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -output-dir=$BPF2GO_OUT -go-package gen -target amd64,arm64 -tags linux -type path_key -type path_replies Arp ../bpf/arp.c -- -I../bpf -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -output-dir=$BPF2GO_OUT -go-package gen -target amd64,arm64 -tags linux -type ns_key -type path_replies Ns ../bpf/ns.c -- -I../bpf -I../bpf/headers -O2 -g -Wall -Werror
