package bench

// Expected lists, by where, the scenario IDs every run must produce:
// `make bench-quick` checks that each is present with figures.
func Expected() map[string][]string {
	return map[string][]string{
		// test/bench/host
		"host": {
			"route-failover-seed-veth", "new-flow-seed-veth", "route-failover-seed-tun",
			"route-failover-ecmp-veth", "new-flow-ecmp-veth", "route-failover-ecmp-tun",
			"datapath-tcp", "datapath-udp64", "idle-cost", "flap-storm", "metrics-under-load",
			"route-scale-1k", "route-scale-10k",
		},
		// test/vm (TestVMBench), per guest kernel
		"vm": {"bond-outage", "bond-failover-duration", "burst-detection", "route-burst",
			"bond-fastpath-lost-ab-miimon", "bond-fastpath-gap-ab-miimon", "bond-fastpath-lost-ab-arp", "bond-fastpath-gap-ab-arp",
			"bond-fastpath-lost-lacp", "bond-fastpath-gap-lacp"},
	}
}
