package doctor

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/internal/carrier"
	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/probe"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/routes"
	"github.com/linkbeat/linkbeat/internal/source"
)

// clean is a snapshot with nothing to report: fentry live, bpffs mounted.
func clean(links ...registry.Link) *Snapshot {
	return &Snapshot{
		Links:          links,
		Speeds:         map[int]Speed{},
		IgnoreLinkdown: map[string]map[string]bool{"ipv4": {}, "ipv6": {}},
		Paths: Paths{Probed: true, Features: source.Features{CarrierSource: carrier.SourceFentry,
			Checks: []probe.Check{{Name: "privileges", OK: true}, {Name: "btf", OK: true}, {Name: "fentry", OK: true}}}},
		Bpffs: Bpffs{PinDir: "/sys/fs/bpf/linkbeat", Mounted: true},
	}
}

func nic(idx int, name string) registry.Link {
	return registry.Link{Index: idx, Name: name, Kind: "device", AdminUp: true, Carrier: true}
}

func veth(idx int, name string) registry.Link {
	l := nic(idx, name)
	l.Kind = "veth"
	return l
}

func bondL(idx int, name, mode string, set func(*registry.Bond)) registry.Link {
	b := &registry.Bond{Mode: mode, Miimon: 100, ArpValidate: "none", PrimaryReselect: "always", ArpIPTargets: []string{}}
	if set != nil {
		set(b)
	}
	return registry.Link{Index: idx, Name: name, Kind: "bond", AdminUp: true, Carrier: true, Bond: b}
}

func port(idx int, name string, master int, set func(*registry.BondSlave)) registry.Link {
	l := nic(idx, name)
	l.MasterIndex = master
	l.BondSlave = &registry.BondSlave{State: "backup", MiiStatus: "up"}
	if set != nil {
		set(l.BondSlave)
	}
	return l
}

func withConfig(s *Snapshot, yaml string) *Snapshot {
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		panic(err)
	}
	s.Monitor.Config = c
	s.Monitor.Daemon.Interfaces = RunInterfaces(nil, c)
	return s
}

func route4(dst string, hops ...routes.Hop) *routes.Route {
	return &routes.Route{Family: unix.AF_INET, Dst: netip.MustParsePrefix(dst), Table: unix.RT_TABLE_MAIN,
		Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_STATIC, Hops: hops, Multipath: len(hops) > 1}
}

func route6(dst string, hops ...routes.Hop) *routes.Route {
	r := route4("0.0.0.0/0", hops...)
	r.Family, r.Dst = unix.AF_INET6, netip.MustParsePrefix(dst)
	return r
}

func hop(idx int, gw string, weight int) routes.Hop {
	h := routes.Hop{Ifindex: idx, Weight: weight}
	if gw != "" {
		h.Gateway = netip.MustParseAddr(gw)
	}
	return h
}

func ids(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID + "(" + f.Severity.String() + ")"
	}
	return out
}

// only runs one check and requires exactly the wanted findings' ids.
func only(t *testing.T, c check, s *Snapshot, want ...string) []Finding {
	t.Helper()
	got := c(s)
	var gotIDs []string
	for _, f := range got {
		gotIDs = append(gotIDs, f.ID)
		if f.Summary == "" || f.Why == "" || f.Fix == "" || f.Subject == "" {
			t.Errorf("%s has an empty field: %+v", f.ID, f)
		}
	}
	if !slices.Equal(gotIDs, want) {
		t.Fatalf("findings %v, want %v:\n%+v", ids(got), want, got)
	}
	return got
}

func mustContain(t *testing.T, what, text string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("%s does not say %q:\n%s", what, p, text)
		}
	}
}
