//go:build ignore

/* IPv6 path health, the sibling of arp.c: on the TC ingress of every probed
 * bond slave, count the neighbour advertisements (RFC 4861) that answer
 * linkbeat's neighbour solicitations, per (slave, target). The daemon sends
 * the solicitations (AF_PACKET, to the target's solicited-node group, from
 * a link-local address derived from a MAC private to the slave, with that
 * MAC as source link-layer option), so the target's solicited NA comes back
 * unicast to that MAC. Nothing is dropped or changed. */
#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "linkbeat.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* TC_ACT_UNSPEC for clsact and TCX_NEXT for tcx: "carry on". */
#define TC_NEXT -1

#define ETH_HLEN 14
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMPV6 58
#define ND_NEIGHBOR_ADVERT 136
#define NA_FLAG_SOLICITED 0x40 /* in the first byte of the flags word */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ns_key);
	__type(value, struct path_replies);
} ns_replies SEC(".maps");

/* The Ethernet destination, the IPv6 header and the NA up to its target:
 * everything the program reads, in one load. */
struct na_frame {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 type;
	__u8 code;
	__be16 csum;
	__u8 flags;
	__u8 reserved[3];
	__u8 target[16];
} __attribute__((packed));

SEC("tc")
int ns_ingress(struct __sk_buff *skb)
{
	/* The probes go out untagged. A tagged frame belongs to a VLAN device
	 * on top of the bond, not to this path: the kernel has moved its tag
	 * into vlan_tci by now (skb->protocol is then the inner type), and a
	 * frame whose tag is still in place has protocol 802.1Q. */
	if (skb->protocol != bpf_htons(ETH_P_IPV6) || skb->vlan_present)
		return TC_NEXT;
	struct na_frame f;
	/* A frame too short for an NA fails the load. */
	if (bpf_skb_load_bytes(skb, 0, &f, sizeof(f)) < 0)
		return TC_NEXT;
	/* RFC 4861 7.1.2: hop limit 255 (the NA was not routed), code 0. An
	 * NA with extension headers is legal but no stack sends one; the
	 * kernel still checks the checksum before anything believes it. */
	if ((f.ver_tc_flow & bpf_htonl(0xf0000000)) != bpf_htonl(0x60000000) ||
	    f.nexthdr != IPPROTO_ICMPV6 || f.hop_limit != 255 ||
	    f.type != ND_NEIGHBOR_ADVERT || f.code != 0 ||
	    !(f.flags & NA_FLAG_SOLICITED) || bpf_ntohs(f.payload_len) < 24)
		return TC_NEXT;

	struct ns_key key = {.ifindex = skb->ifindex};
	__builtin_memcpy(key.target, f.target, sizeof(key.target));
	struct path_replies *v = bpf_map_lookup_elem(&ns_replies, &key);
	if (!v)
		return TC_NEXT;
	/* Only an answer to this slave's probe: the target sends its
	 * solicited NA to the probe's source link-layer address. */
	for (int i = 0; i < 6; i++)
		if (f.dst[i] != v->mac[i])
			return TC_NEXT;
	__sync_fetch_and_add(&v->replies, 1);
	v->last_ns = bpf_ktime_get_ns();
	return TC_NEXT;
}
