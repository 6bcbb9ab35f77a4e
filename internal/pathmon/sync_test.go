package pathmon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/internal/config"
	"github.com/linkbeat/linkbeat/internal/registry"
	"github.com/linkbeat/linkbeat/internal/source"
)

func bondLink(idx int, name string) registry.Link {
	return registry.Link{Index: idx, Name: name, Kind: "bond", Bond: &registry.Bond{Mode: "active-backup"}}
}

func slaveLink(idx int, name string, master int) registry.Link {
	return registry.Link{Index: idx, Name: name, Kind: "device", MasterIndex: master, BondSlave: &registry.BondSlave{State: "backup"}}
}

func TestSyncer(t *testing.T) {
	k, _ := twoSlaves()
	k.links[4] = macInput{Current: mac("52:54:00:00:00:04")}
	m := newMonitor(k, nil)
	defer m.Close()
	targets := map[string][]netip.Addr{"bond0": {target1}}
	settings := func(name string) config.BondSettings {
		return config.BondSettings{ARPTargets: targets[name], ARPInterval: time.Hour, MissedMax: 3}
	}
	s := NewSyncer(m, settings)
	// The event source's link table, the one owner of membership.
	table := registry.NewTable()
	feed := func(kind registry.ChangeKind, l registry.Link) {
		t.Helper()
		for _, c := range table.Apply(registry.Update{Link: l, Deleted: kind == registry.Removed}) {
			if err := s.Link(source.LinkEvent{Change: c, Bonds: source.BondsTouched(table, c)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Slaves may come before their bond.
	feed(registry.Added, slaveLink(2, "eth0", 10))
	feed(registry.Added, bondLink(10, "bond0"))
	feed(registry.Added, slaveLink(3, "eth1", 10))
	feed(registry.Added, bondLink(11, "bond1")) // no targets: not probed
	feed(registry.Added, slaveLink(4, "eth2", 11))
	if len(k.ports) != 2 || k.port(2) == nil || k.port(3) == nil {
		t.Fatalf("ports %v, want eth0 and eth1", k.ports)
	}
	if st := m.Status(); len(st) != 1 || st[0].Name != "bond0" {
		t.Fatalf("status %+v", st)
	}
	// Carrier changes and the like cost no SetBond.
	opened := len(k.opened)
	for range 5 {
		feed(registry.Updated, slaveLink(2, "eth0", 10))
		feed(registry.Updated, bondLink(10, "bond0"))
	}
	if len(k.opened) != opened || len(k.closed) != 0 {
		t.Fatalf("updates reopened ports: opened %d, closed %v", len(k.opened), k.closed)
	}
	// eth1 is released from the bond.
	l := slaveLink(3, "eth1", 0)
	l.BondSlave = nil
	feed(registry.Updated, l)
	if k.port(3) != nil {
		t.Fatal("released eth1 still probed")
	}
	// eth0 is deleted.
	feed(registry.Removed, slaveLink(2, "eth0", 10))
	if p := k.port(2); p != nil {
		t.Fatal("deleted eth0 still probed")
	}
	if got := k.closed; len(got) != 2 || got[1] != 2 {
		t.Fatalf("closed %v", got)
	}
	// It comes back.
	feed(registry.Added, slaveLink(2, "eth0", 10))
	if k.port(2) == nil {
		t.Fatal("eth0 not probed again")
	}
	// The config gives bond1 targets and takes bond0's.
	targets = map[string][]netip.Addr{"bond1": {target2}}
	if err := s.Refresh(source.Bonds(table)); err != nil {
		t.Fatal(err)
	}
	if k.port(2) != nil || k.port(4) == nil {
		t.Fatalf("after the config change: ports %v", k.ports)
	}
	// bond1 is deleted: its slave, still there, is cleaned up.
	feed(registry.Removed, bondLink(11, "bond1"))
	if p := k.port(4); p != nil {
		t.Fatal("bond1's slave still probed")
	}
	if len(m.Status()) != 0 {
		t.Fatalf("status %+v", m.Status())
	}
}
