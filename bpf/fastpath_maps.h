/* The fast path's maps, declared alike in bpf/carrier.c and bpf/fastpath.c
 * so that the daemon creates them once and hands the same maps to both
 * objects (MapReplacements). */
#pragma once

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct fp_bond);
} fp_bonds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct fp_slave);
} fp_slaves SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct fp_redirect);
} fp_redirects SEC(".maps");

static __always_inline bool fp_is_cand(struct fp_bond *b, __u32 ifindex)
{
	for (int i = 0; i < FP_MAX_SLAVES; i++) {
		if (i >= b->n)
			break;
		if (b->cand[i] == ifindex)
			return true;
	}
	return false;
}

/* Carrier-off: when the bond's active slave dies (any slave, in tlb, alb
 * and the hash modes, which send through every slave), pick the first candidate
 * other than it that has carrier and mark the redirect, in the driver's
 * call. Carrier-on: the slave is live again; a redirect away from it ends. */
static __always_inline void fp_carrier(__u32 ifindex, bool up, __u64 now, __u32 source)
{
	struct fp_slave *s = bpf_map_lookup_elem(&fp_slaves, &ifindex);
	if (!s)
		return;
	s->carrier = up;
	__u32 bond = s->bond;
	if (up) {
		struct fp_redirect *p = bpf_map_lookup_elem(&fp_redirects, &bond);
		if (p && p->dead == ifindex)
			bpf_map_delete_elem(&fp_redirects, &bond);
		return;
	}
	struct fp_bond *b = bpf_map_lookup_elem(&fp_bonds, &bond);
	if (!b || (!(b->flags & FP_ANY) && b->active != ifindex))
		return;
	/* In the hash modes only a slave the bond sends on counts: a port
	 * outside the transmit array (another aggregator's) carries nothing
	 * to redirect, and its mark would take over a live redirect. */
	if ((b->flags & FP_HASH) && !fp_is_cand(b, ifindex))
		return;
	for (int i = 0; i < FP_MAX_SLAVES; i++) {
		if (i >= b->n)
			break;
		__u32 c = b->cand[i];
		if (c == ifindex || c == 0)
			continue;
		struct fp_slave *cs = bpf_map_lookup_elem(&fp_slaves, &c);
		if (!cs || !cs->carrier || cs->bond != bond)
			continue;
		struct fp_redirect p = {
			.dead_ns = now, .expires_ns = now + b->ttl_ns,
			.dead = ifindex, .to = c, .source = source,
		};
		bpf_map_update_elem(&fp_redirects, &bond, &p, BPF_ANY);
		return;
	}
}
