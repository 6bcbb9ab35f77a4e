//go:build ignore

/* Per-interface traffic (TC, both directions) and transmit errors
 * (net tracepoints), all into one per-CPU map keyed by ifindex. */
#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "linkbeat.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* TC_ACT_UNSPEC for clsact and TCX_NEXT for tcx: both mean "carry on", so
 * linkbeat never changes what other programs on the link decide. */
#define TC_NEXT -1

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct if_counters);
} if_stats SEC(".maps");

/* The daemon's record of each monitored link's carrier (see linkbeat.h).
 * Kept with the counters so that one pin directory holds linkbeat's state. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct link_state);
} link_state SEC(".maps");

static __always_inline struct if_counters *lookup(__u32 ifindex)
{
	return bpf_map_lookup_elem(&if_stats, &ifindex);
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	struct if_counters *c = lookup(skb->ifindex);
	if (c) {
		c->rx_packets++;
		c->rx_bytes += skb->len;
		c->rx_last_ns = bpf_ktime_get_ns();
	}
	return TC_NEXT;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	struct if_counters *c = lookup(skb->ifindex);
	if (c) {
		c->tx_packets++;
		c->tx_bytes += skb->len;
		c->tx_last_ns = bpf_ktime_get_ns();
	}
	return TC_NEXT;
}

/* Raw tracepoints get the real arguments, so the device comes straight from
 * dev instead of parsing the event's name string. */
SEC("raw_tp/net_dev_xmit")
int BPF_PROG(xmit_errors, struct sk_buff *skb, int rc, struct net_device *dev)
{
	if (rc == 0)
		return 0;
	struct if_counters *c = lookup(BPF_CORE_READ(dev, ifindex));
	if (c)
		c->tx_errors++;
	return 0;
}

SEC("raw_tp/net_dev_xmit_timeout")
int BPF_PROG(xmit_timeouts, struct net_device *dev)
{
	struct if_counters *c = lookup(BPF_CORE_READ(dev, ifindex));
	if (c)
		c->tx_timeouts++;
	return 0;
}
