// Package gen holds the bpf2go output for linkbeat's BPF programs. The
// generated .go and .o files are committed, so building needs no clang;
// `make generate` rebuilds them and CI fails if that changes anything.
package gen

//go:generate go tool bpf2go -go-package gen -target bpfel -tags linux -type carrier_event -type carrier_source Carrier ../bpf/carrier.c -- -D__TARGET_ARCH_x86 -I../bpf -O2 -g -Wall -Werror
//go:generate go tool bpf2go -go-package gen -target bpfel -tags linux -type if_counters Traffic ../bpf/traffic.c -- -D__TARGET_ARCH_x86 -I../bpf -O2 -g -Wall -Werror
//go:generate go tool bpf2go -go-package gen -target bpfel -tags linux -type path_key -type path_replies Arp ../bpf/arp.c -- -D__TARGET_ARCH_x86 -I../bpf -O2 -g -Wall -Werror
