/* Types shared by the BPF programs and the Go daemon. bpf2go turns each of
 * them into a Go struct (-type), so both sides agree through BTF. */
#pragma once

#define IFNAMSIZ 16

enum carrier_source {
	CARRIER_SOURCE_FENTRY = 1,
	CARRIER_SOURCE_KPROBE = 2,
};

/* One carrier transition, as the driver made it. up_count/down_count are the
 * device's counters after this transition, so the daemon can spot gaps. */
struct carrier_event {
	__u64 ts_ns; /* CLOCK_MONOTONIC, bpf_ktime_get_ns() */
	/* 1, 2, 3, ... per queued event (see carrier_seq): lets the daemon
	 * tell whether every event queued before a netlink notice was read. */
	__u64 seq;
	__u32 ifindex;
	__u32 netns_ino;
	__u32 up_count;
	__u32 down_count;
	__u8 up;
	__u8 source; /* enum carrier_source */
	__u8 pad[6];
	char ifname[IFNAMSIZ];
};

/* Per-interface traffic, one slot per CPU (BPF_MAP_TYPE_PERCPU_HASH). An
 * entry exists only for monitored interfaces: the daemon creates it, and the
 * programs never do, so the lookup is also the "is it monitored" filter. */
struct if_counters {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 rx_last_ns;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 tx_last_ns;
	__u64 tx_errors;
	__u64 tx_timeouts;
};
