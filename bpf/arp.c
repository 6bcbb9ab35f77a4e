//go:build ignore

/* ARP path health: on the TC ingress of every probed bond slave, count the
 * ARP replies that answer linkbeat's probes, per (slave, target). The
 * daemon sends the probes (AF_PACKET, RFC 5227 style: sender IP 0.0.0.0,
 * sender MAC private to the slave) and reads the counters every interval.
 * Nothing is dropped or changed: every packet carries on. */
#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "linkbeat.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* TC_ACT_UNSPEC for clsact and TCX_NEXT for tcx: "carry on". */
#define TC_NEXT -1

#define ETH_HLEN 14
#define ETH_P_ARP 0x0806
#define ETH_P_IP 0x0800
#define ARPHRD_ETHER 1
#define ARPOP_REPLY 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct path_key);
	__type(value, struct path_replies);
} arp_replies SEC(".maps");

/* An Ethernet/IPv4 ARP packet after the Ethernet header (RFC 826). */
struct arp_eth_ipv4 {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

SEC("tc")
int arp_ingress(struct __sk_buff *skb)
{
	/* An in-band VLAN tag is already stripped into skb->vlan_tci here. */
	if (skb->protocol != bpf_htons(ETH_P_ARP))
		return TC_NEXT;
	struct arp_eth_ipv4 arp;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) < 0)
		return TC_NEXT;
	if (arp.op != bpf_htons(ARPOP_REPLY) || arp.hrd != bpf_htons(ARPHRD_ETHER) ||
	    arp.pro != bpf_htons(ETH_P_IP) || arp.hln != 6 || arp.pln != 4)
		return TC_NEXT;

	struct path_key key = {.ifindex = skb->ifindex};
	__builtin_memcpy(&key.target, arp.spa, sizeof(key.target));
	struct path_replies *v = bpf_map_lookup_elem(&arp_replies, &key);
	if (!v)
		return TC_NEXT;
	/* Only a reply to this slave's probe: the target answers a probe
	 * with tha = the probe's sha. */
	for (int i = 0; i < 6; i++)
		if (arp.tha[i] != v->mac[i])
			return TC_NEXT;
	__sync_fetch_and_add(&v->replies, 1);
	v->last_ns = bpf_ktime_get_ns();
	return TC_NEXT;
}
