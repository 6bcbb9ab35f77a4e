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

/* What the daemon last saw of a link's carrier, written from user space on
 * every change (the programs never touch it). Pinned beside if_stats, so
 * `linkbeat status` and bpftool read it while the daemon is not running. */
struct link_state {
	__u64 changed_ns; /* CLOCK_MONOTONIC of the last change; 0: not seen change */
	__u64 seen_ns;    /* CLOCK_MONOTONIC when the daemon last recorded the link */
	__u32 up_count;   /* the device's carrier_up_count then */
	__u32 down_count; /* the device's carrier_down_count then */
	__u8 carrier;     /* 1: carrier, 0: none */
	__u8 source;      /* how the change was seen: 1 fentry, 2 kprobe, 3 netlink, 4 resync; 0 first sight */
	__u8 pad[6];
};

/* ARP path health (bpf/arp.c): one entry per probed slave and ARP target.
 * The daemon creates the entry, with the MAC the slave probes from; the
 * program only counts, so the lookup is also the "is it probed" filter. */
struct path_key {
	__u32 ifindex;
	__u32 target; /* IPv4, network byte order (the packet's bytes) */
};

struct path_replies {
	__u64 replies; /* ARP replies (NAs in ns.c) from target to mac on ifindex */
	__u64 last_ns; /* CLOCK_MONOTONIC of the latest, bpf_ktime_get_ns() */
	__u8 mac[6];   /* the probe's sender MAC: an ARP reply must carry it as
			* tha, an NA must be sent to it */
	__u8 pad[2];
};

/* IPv6 path health (bpf/ns.c): one entry per probed slave and NS target,
 * with a struct path_replies whose mac is the probe's source link-layer
 * address (the target's solicited NA is sent to it). */
struct ns_key {
	__u32 ifindex;
	__u8 target[16]; /* IPv6, the packet's bytes */
};

/* The bond fast path (bpf/fastpath.c, and the carrier programs of
 * bpf/carrier.c): a dead active slave's frames go out of a replacement
 * picked in the driver's carrier call, before the bond switches under RTNL.
 * The daemon keeps fp_bonds and fp_slaves current; the programs write
 * fp_redirects and the carrier field of fp_slaves. */
#define FP_MAX_SLAVES 8

/* fp_bond.flags */
#define FP_INGRESS 1 /* hand the replacement's frames to the bond (active-backup) */
#define FP_ANY 2     /* any slave's loss counts, not only the active's (tlb, alb, hash modes) */
/* Hash modes (802.3ad, balance-xor): a dead slave's frames are spread over
 * every live candidate by flow hash, not all sent out of fp_redirect.to. */
#define FP_HASH 4

/* One fast-path bond (fp_bonds, by bond ifindex). No entry: fast path off. */
struct fp_bond {
	__u64 ttl_ns; /* a redirect is void this long after the mark unless refreshed */
	__u32 active; /* the bond's active slave as the daemon last read it */
	__u32 n;      /* candidates used */
	/* Replacement candidates in preference order (primary first, then
	 * the bond's order): up in the bond's view and admin up. Carrier is
	 * checked at the moment of the pick, in fp_slaves. */
	__u32 cand[FP_MAX_SLAVES];
	__u32 flags; /* FP_INGRESS, FP_ANY, FP_HASH */
	__u32 pad;
};

/* One slave of a fast-path bond (fp_slaves, by slave ifindex). */
struct fp_slave {
	__u32 bond;    /* master ifindex */
	__u32 carrier; /* 1: carrier; kept by the carrier programs */
};

/* A pending fast failover (fp_redirects, by bond ifindex): the bond still
 * hands frames to dead, and they leave through to. */
struct fp_redirect {
	__u64 dead_ns;    /* the driver's netif_carrier_off (or the netlink notice) */
	__u64 expires_ns; /* no redirect after this (CLOCK_MONOTONIC) */
	__u64 first_ns;   /* the first redirected frame, 0 before */
	__u32 dead;
	__u32 to;
	__u32 source;     /* enum carrier_source, or 3: the daemon (netlink) */
	__u32 pad;
};

/* Per-slave redirect counters (fp_slave_stats, by slave ifindex). */
struct fp_stats {
	__u64 tx_redirected; /* frames the bond gave this dead slave, sent out of another */
	__u64 rx_redirected; /* frames received here, handed to the bond */
	__u64 tx_skipped;    /* frames for a dead slave left alone: no live replacement, or expired */
	__u64 tx_taken;      /* frames of a dead slave sent out of this one */
};
