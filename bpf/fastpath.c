//go:build ignore

/* The bond fast path's datapath: on each slave of a fast-path bond, TC
 * egress sends the frames the bond still hands to its dead active slave
 * out of the replacement the carrier program picked (bpf/fastpath_maps.h)
 * or, in the hash modes (802.3ad, balance-xor), spreads them by flow over
 * the live slaves the bond itself would send on; TC ingress (active-backup) hands the replacement's frames to the bond, which would
 * otherwise give a backup's frames to exact-match handlers only. Both end
 * with the pending entry: the daemon deletes it once the bond has
 * switched, carrier-on deletes it, and it is void after expires_ns. */
#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "linkbeat.h"
#include "fastpath_maps.h"

char __license[] SEC("license") = "Dual MIT/GPL";

const struct fp_bond *unused_fp_bond __attribute__((unused));
const struct fp_slave *unused_fp_slave __attribute__((unused));
const struct fp_redirect *unused_fp_redirect __attribute__((unused));
const struct fp_stats *unused_fp_stats __attribute__((unused));

#define TC_NEXT -1
#define ETH_P_ARP 0x0806
#define ETH_P_SLOW 0x8809 /* LACP, marker */
#define BPF_F_INGRESS_FLAG 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct fp_stats);
} fp_slave_stats SEC(".maps");

/* The pending failover of ifindex's bond, if it is still in force. */
static __always_inline struct fp_redirect *pending_of(__u32 ifindex, __u32 *bond, __u64 now)
{
	struct fp_slave *s = bpf_map_lookup_elem(&fp_slaves, &ifindex);
	if (!s)
		return NULL;
	*bond = s->bond;
	struct fp_redirect *p = bpf_map_lookup_elem(&fp_redirects, bond);
	if (!p || now > p->expires_ns)
		return NULL;
	return p;
}

static __always_inline struct fp_stats *stats_of(__u32 ifindex)
{
	struct fp_stats *st = bpf_map_lookup_elem(&fp_slave_stats, &ifindex);
	if (st)
		return st;
	struct fp_stats zero = {};
	bpf_map_update_elem(&fp_slave_stats, &ifindex, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&fp_slave_stats, &ifindex);
}

/* A live replacement for a frame of dead: in the hash modes the flow's
 * share of the live candidates (so the dead slave's flows spread over the
 * rest of the aggregator, and each flow stays on one slave: no reordering
 * within it); else the one the carrier program picked. 0: none. */
static __always_inline __u32 replacement(struct __sk_buff *skb, struct fp_redirect *p, __u32 bond, __u32 dead)
{
	struct fp_bond *b = bpf_map_lookup_elem(&fp_bonds, &bond);
	if (!b || !(b->flags & FP_HASH)) {
		__u32 to = p->to;
		struct fp_slave *t = bpf_map_lookup_elem(&fp_slaves, &to);
		if (to == dead || !t || !t->carrier || t->bond != bond)
			return 0;
		return to;
	}
	__u32 live[FP_MAX_SLAVES] = {};
	__u32 n = 0;
	for (int i = 0; i < FP_MAX_SLAVES; i++) {
		if (i >= b->n)
			break;
		__u32 c = b->cand[i];
		if (c == dead || c == 0)
			continue;
		struct fp_slave *cs = bpf_map_lookup_elem(&fp_slaves, &c);
		if (!cs || !cs->carrier || cs->bond != bond)
			continue;
		live[n & (FP_MAX_SLAVES - 1)] = c;
		n++;
	}
	if (n == 0)
		return 0;
	return live[(bpf_get_hash_recalc(skb) % n) & (FP_MAX_SLAVES - 1)];
}

SEC("tc")
int fp_egress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex, bond = 0;
	__u64 now = bpf_ktime_get_ns();
	struct fp_redirect *p = pending_of(ifindex, &bond, now);
	/* Only a dead slave's frames move: a frame already redirected is on
	 * a live slave, which is never the dead one, so it is never
	 * redirected again. */
	if (!p || p->dead != ifindex)
		return TC_NEXT;
	/* LACPDUs and markers belong to their port: sent out of another,
	 * they would tell the partner that port is still there. */
	if (skb->protocol == bpf_htons(ETH_P_SLOW))
		return TC_NEXT;
	__u32 to = replacement(skb, p, bond, ifindex);
	struct fp_stats *st = stats_of(ifindex);
	if (to == 0) {
		if (st)
			__sync_fetch_and_add(&st->tx_skipped, 1);
		return TC_NEXT;
	}
	if (st)
		__sync_fetch_and_add(&st->tx_redirected, 1);
	struct fp_stats *tst = stats_of(to);
	if (tst)
		__sync_fetch_and_add(&tst->tx_taken, 1);
	if (p->first_ns == 0)
		__sync_val_compare_and_swap(&p->first_ns, 0, now);
	return bpf_redirect(to, 0);
}

SEC("tc")
int fp_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex, bond = 0;
	__u64 now = bpf_ktime_get_ns();
	struct fp_redirect *p = pending_of(ifindex, &bond, now);
	if (!p || p->to != ifindex)
		return TC_NEXT;
	/* Only active-backup keeps a backup's frames from the stack. */
	struct fp_bond *b = bpf_map_lookup_elem(&fp_bonds, &bond);
	if (!b || !(b->flags & FP_INGRESS))
		return TC_NEXT;
	/* LACP is the slave's own business. ARP goes on to the slave, where
	 * the bond's ARP monitor (arp_validate) reads it, and a copy to the
	 * bond, whose stack would not see it from a backup slave. */
	if (skb->protocol == bpf_htons(ETH_P_SLOW))
		return TC_NEXT;
	struct fp_stats *st = stats_of(ifindex);
	if (skb->protocol == bpf_htons(ETH_P_ARP)) {
		if (bpf_clone_redirect(skb, bond, BPF_F_INGRESS_FLAG) == 0 && st)
			__sync_fetch_and_add(&st->rx_redirected, 1);
		return TC_NEXT;
	}
	if (st)
		__sync_fetch_and_add(&st->rx_redirected, 1);
	return bpf_redirect(bond, BPF_F_INGRESS_FLAG);
}
