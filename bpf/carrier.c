//go:build ignore

/* Carrier transitions at the moment the driver reports them, before
 * linkwatch batches (and, for plain NICs, delays) the netlink notice. */
#include "headers/vmlinux.h"

#if defined(__TARGET_ARCH_arm64)
/* bpf_tracing.h reads arm64 kprobe arguments through the UAPI struct
 * user_pt_regs, which the x86 vmlinux.h lacks. Its layout is ABI, so no
 * CO-RE is needed (arch/arm64/include/uapi/asm/ptrace.h). */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "linkbeat.h"
#include "fastpath_maps.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Referenced so that BTF, and so bpf2go, sees the types user space reads. */
const struct carrier_event *unused_carrier_event __attribute__((unused));
const enum carrier_source *unused_carrier_source __attribute__((unused));

/* Only events from this network namespace (inode number); 0 means all. */
const volatile __u32 target_netns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} carrier_events SEC(".maps");

/* Events lost because the ring buffer was full: the daemon resyncs on growth. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} carrier_drops SEC(".maps");

/* How many events were queued; read by the daemon before it trusts a
 * netlink notice over the ring, since the driver's call (and so its event)
 * always comes before linkwatch's notice. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} carrier_seq SEC(".maps");

static __always_inline int emit(struct net_device *dev, bool up, __u8 source)
{
	unsigned long state = BPF_CORE_READ(dev, state);
	int nocarrier_bit = bpf_core_enum_value(enum netdev_state_t, __LINK_STATE_NOCARRIER);
	bool nocarrier = state & (1UL << nocarrier_bit);

	/* Drivers call these on every open and probe; only a real transition
	 * counts: on() clears a set NOCARRIER bit, off() sets a clear one. */
	if (up != nocarrier)
		return 0;
	/* The kernel changes neither counters nor linkwatch for these. */
	if (BPF_CORE_READ(dev, reg_state) == NETREG_UNINITIALIZED)
		return 0;

	__u32 netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	if (target_netns && netns != target_netns)
		return 0;

	__u64 now = bpf_ktime_get_ns();
	/* Before the ring: a full ring must not stop the fast path. */
	fp_carrier(BPF_CORE_READ(dev, ifindex), up, now, source);

	__u32 zero = 0;
	struct carrier_event *e = bpf_ringbuf_reserve(&carrier_events, sizeof(*e), 0);
	if (!e) {
		__u64 *drops = bpf_map_lookup_elem(&carrier_drops, &zero);
		if (drops)
			__sync_fetch_and_add(drops, 1);
		return 0;
	}
	e->ts_ns = now;
	__u64 *seq = bpf_map_lookup_elem(&carrier_seq, &zero);
	e->seq = seq ? __sync_fetch_and_add(seq, 1) + 1 : 0;
	e->ifindex = BPF_CORE_READ(dev, ifindex);
	e->netns_ino = netns;
	e->up_count = BPF_CORE_READ(dev, carrier_up_count.counter) + (up ? 1 : 0);
	e->down_count = BPF_CORE_READ(dev, carrier_down_count.counter) + (up ? 0 : 1);
	e->up = up;
	e->source = source;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("fentry/netif_carrier_on")
int BPF_PROG(fentry_carrier_on, struct net_device *dev)
{
	return emit(dev, true, CARRIER_SOURCE_FENTRY);
}

SEC("fentry/netif_carrier_off")
int BPF_PROG(fentry_carrier_off, struct net_device *dev)
{
	return emit(dev, false, CARRIER_SOURCE_FENTRY);
}

SEC("kprobe/netif_carrier_on")
int BPF_KPROBE(kprobe_carrier_on, struct net_device *dev)
{
	return emit(dev, true, CARRIER_SOURCE_KPROBE);
}

SEC("kprobe/netif_carrier_off")
int BPF_KPROBE(kprobe_carrier_off, struct net_device *dev)
{
	return emit(dev, false, CARRIER_SOURCE_KPROBE);
}
