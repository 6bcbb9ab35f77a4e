//go:build vmguest

package guest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
)

type linkInfo struct {
	Ifindex int    `json:"ifindex"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Carrier bool   `json:"carrier"`
	Master  string `json:"master"`
	Bond    *struct {
		Mode        string   `json:"mode"`
		Miimon      int      `json:"miimon"`
		Slaves      []string `json:"slaves"`
		ActiveSlave string   `json:"active_slave"`
	} `json:"bond"`
}

// TestBondVisibility builds an active-backup bond over eth2 and eth3 and
// checks that `linkbeat links` shows it as the kernel has it.
func TestBondVisibility(t *testing.T) {
	// bonding.ko is loaded with max_bonds=0, but a leftover bond0 from an
	// earlier test in this boot would make LinkAdd fail.
	if l, err := netlink.LinkByName("bond0"); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Fatalf("delete leftover bond0: %v", err)
		}
	}
	setLinks(t, true, "net2", "net3")

	bond := netlink.NewLinkBond(netlink.LinkAttrs{Name: "bond0"})
	bond.Mode = netlink.BOND_MODE_ACTIVE_BACKUP
	bond.Miimon = 100
	if err := netlink.LinkAdd(bond); err != nil {
		t.Fatalf("create bond0: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName("bond0"); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bond0: %v", err)
			}
		}
	})
	bondLink := mustLink(t, "bond0")
	for _, s := range []string{"eth2", "eth3"} {
		// Older kernels refuse to enslave a device that is up.
		setAdmin(t, s, false)
		if err := netlink.LinkSetMaster(mustLink(t, s), bondLink); err != nil {
			t.Fatalf("enslave %s to bond0: %v", s, err)
		}
	}
	setAdmin(t, "bond0", true)

	out := runLinkbeat(t, "links", "--json")
	var links []linkInfo
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("links --json is not a JSON array of links: %v\n%s", err, out)
	}
	byName := map[string]linkInfo{}
	for _, l := range links {
		byName[l.Name] = l
	}
	b, ok := byName["bond0"]
	if !ok {
		t.Fatalf("bond0 missing from links --json:\n%s", out)
	}
	t.Logf("bond0: %+v bond=%+v", b, b.Bond)
	if b.Kind != "bond" {
		t.Errorf("bond0 kind = %q, want bond", b.Kind)
	}
	if b.Ifindex != bondLink.Attrs().Index {
		t.Errorf("bond0 ifindex = %d, want %d", b.Ifindex, bondLink.Attrs().Index)
	}
	if b.Bond == nil {
		t.Fatalf("bond0 has no bond object:\n%s", out)
	}
	if b.Bond.Mode != "active-backup" {
		t.Errorf("bond0 mode = %q, want active-backup", b.Bond.Mode)
	}
	if b.Bond.Miimon != 100 {
		t.Errorf("bond0 miimon = %d, want 100", b.Bond.Miimon)
	}
	slaves := slices.Clone(b.Bond.Slaves)
	slices.Sort(slaves)
	if !slices.Equal(slaves, []string{"eth2", "eth3"}) {
		t.Errorf("bond0 slaves = %v, want eth2 and eth3", b.Bond.Slaves)
	}
	for _, s := range []string{"eth2", "eth3"} {
		l, ok := byName[s]
		switch {
		case !ok:
			t.Errorf("%s missing from links --json", s)
		case l.Master != "bond0":
			t.Errorf("%s master = %q, want bond0", s, l.Master)
		}
	}
	if l, ok := byName["eth0"]; ok && l.Master != "" {
		t.Errorf("eth0 master = %q, want none", l.Master)
	}
}
