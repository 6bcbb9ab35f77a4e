package doctor

// Sections of the guide, as findings name them.
const (
	guideTree         = "choosing a method"
	guideSTP          = "STP"
	guideBonding      = "bonding, every mode"
	guideActiveBackup = "bonding: active-backup"
	guideLACP         = "bonding: 802.3ad"
	guideALB          = "bonding: balance-alb"
	guideRoutes       = "routes over several links"
	guideLinkbeat     = "linkbeat itself"
)

// Guide is the text `linkbeat doctor --guide` prints: the decision tree
// of "Redundant Network Interfaces" (2006), brought up to date with
// iproute2 and today's bonding driver, with the checks doctor makes at
// each step.
const Guide = `Redundant network interfaces on Linux: which method, and how to check it
========================================================================

Choosing a method
-----------------
1. Do you control the switches the server is plugged into?
   Yes: go to 2.  No: go to 5.
2. Are the interfaces connected to different switches?
   Yes: go to 3.  No: go to 4.
3. Should the server bridge between the switches as a last resort?
   Yes: STP.  No: bonding: active-backup.
4. Should the interfaces share bandwidth when both are up?
   Yes: bonding: 802.3ad.  No: bonding: active-backup.
5. Should the interfaces share bandwidth when both are up?
   Yes: bonding: balance-alb.  No: bonding: active-backup.

802.3ad across two switches works only when they act as one LACP partner
(stacking, MLAG, vPC); otherwise the ports land in separate aggregators
and only one carries traffic (doctor: bond-lacp-split-aggregators).
balance-rr, balance-xor, broadcast and balance-tlb are not on the tree:
doctor notes them (bond-mode-outside-guide).

STP
---
A Linux bridge over both interfaces with spanning tree on; one port blocks
and carries nothing until the other path fails. It does not share
bandwidth, but lets the server bridge between the switches if nothing else
connects them.

  ip link add br0 type bridge stp_state 1
  ip link set eth0 master br0 && ip link set eth1 master br0
  ip link set br0 up     # addresses go on br0

Make one switch the root bridge so the server never is
(IOS: spanning-tree vlan 1 priority 0), and raise the cost of the switch
ports facing the server (spanning-tree cost 100) so its bridge carries
transit traffic only as a last resort. Check with
"bridge link show" (one port "blocking") and "show spanning-tree" on the
switch. Classic STP needs 2 x forward_delay (30 s by default) to move the
blocked port to forwarding after a failure.

Bonding, every mode
-------------------
A bond changes slaves only when its own link monitor says so. Give it one:

  miimon 100                              carrier, every 100 ms
  arp_interval 200 arp_ip_target A,B      path: ARP probes to A and B
  arp_validate all                        (only with arp_interval) count only
                                          ARP traffic that proves the path

With neither, the bond never fails over by itself
(doctor: bond-no-link-monitor). arp_interval without arp_ip_target probes
nothing (bond-arp-no-targets); ARP monitoring without arp_validate counts
any received frame as proof of life, so a dead path looks alive
(bond-arp-validate-none). For IPv6, ns_ip6_target (Linux 6.0+) is probed
by the same ARP monitor and needs arp_validate too
(bond-ns-target-ignored); an IPv6-only bond with no IPv6 probe at all
has no path check (bond-ipv6-no-path-check). The kernel keeps updelay and downdelay as whole
miimon ticks and rounds what is asked for down to a multiple of miimon:
ask for multiples (bond-delay-rounded).

  ip link add bond0 type bond mode MODE miimon 100
  ip link set eth0 down && ip link set eth0 master bond0
  ip link set eth1 down && ip link set eth1 master bond0
  ip link set bond0 up   # addresses go on bond0
  cat /proc/net/bonding/bond0

Debian's ifupdown: "iface bond0 inet static" with "bond-slaves eth0 eth1",
"bond-mode active-backup", "bond-miimon 100" (package ifenslave).

Bonding: active-backup
----------------------
One slave carries everything; the others wait. Works with any switches, no
switch configuration.

  ip link add bond0 type bond mode active-backup miimon 100
  # or, to notice a dead path behind a live link:
  ip link add bond0 type bond mode active-backup arp_interval 200 \
      arp_ip_target 10.0.0.2,10.0.0.3 arp_validate all

The 2006 guide used arp_interval=500 with two targets but left arp_validate
at none: a backup that hears any frame then looks alive whatever its path.
With slaves of different speeds, name the fastest as primary so the bond
goes back to it after a failover (bond-ab-mixed-speed-no-primary):

  ip link set bond0 type bond primary eth0 primary_reselect better

Bonding: 802.3ad
----------------
LACP: both ends agree on which ports form one aggregate; every flow uses
one port, flows are spread by hash. All ports must run at the same speed
and full duplex (bond-lacp-speed-duplex-mismatch), and the switch ports
must run LACP (bond-lacp-no-partner).

  ip link add bond0 type bond mode 802.3ad miimon 100 lacp_rate fast
  # IOS, for each port:  channel-protocol lacp / channel-group 1 mode active
  # check: show etherchannel port-channel; grep -A3 "Partner Mac" /proc/net/bonding/bond0

Bonding: balance-alb
--------------------
Shares outgoing traffic by load, and incoming traffic by answering ARP with
different slaves' MACs. No switch configuration.

  ip link add bond0 type bond mode balance-alb miimon 100

The 2006 guide gave balance-alb an ARP monitor; the bonding driver refuses
ARP monitoring in balance-alb, balance-tlb and 802.3ad, so use miimon.

Routes over several links
-------------------------
Without a bond, two links can share one route (ECMP):

  ip route add default nexthop via 10.1.0.2 dev eth0 nexthop via 10.2.0.2 dev eth1

When one link loses carrier, the kernel keeps hashing flows onto its
nexthop unless net.ipv4.conf.*.ignore_routes_with_linkdown (and the IPv6
one) is 1 (doctor: multipath-nexthop-linkdown):

  sysctl -w net.ipv4.conf.all.ignore_routes_with_linkdown=1 \
            net.ipv4.conf.default.ignore_routes_with_linkdown=1 \
            net.ipv6.conf.all.ignore_routes_with_linkdown=1 \
            net.ipv6.conf.default.ignore_routes_with_linkdown=1

linkbeat itself
---------------
"linkbeat run" withdraws a dead link's routes (only its nexthop on a
multipath route) and switches active-backup, balance-tlb and balance-alb
bonds on the driver's carrier event, before miimon. It does both only for
interfaces it monitors (--interfaces, the config's interfaces; listing a
bond covers its ports; doctor: routes-not-monitored). It sees carrier
changes first through fentry or kprobe on netif_carrier_on/off; with only
netlink left, linkwatch may hold a plain NIC's notice back up to 1 s
(carrier-path-netlink). It pins its maps on a bpffs (bpffs-not-mounted).
"linkbeat doctor" checks all of the above; "linkbeat doctor --json" for
scripts; exit status 0 (nothing above info), 1 (warnings), 2 (errors).
`
