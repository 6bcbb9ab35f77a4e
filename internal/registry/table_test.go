package registry

import "testing"

func TestTableAddUpdateRenameRemove(t *testing.T) {
	tb := NewTable()
	ch := tb.Apply(Update{Link: Link{Index: 3, Name: "eth0"}})
	if len(ch) != 1 || ch[0].Kind != Added {
		t.Fatalf("add: %+v", ch)
	}
	ch = tb.Apply(Update{Link: Link{Index: 3, Name: "wan0"}})
	if len(ch) != 1 || !ch[0].Renamed() || ch[0].Old.Name != "eth0" {
		t.Fatalf("rename: %+v", ch)
	}
	if _, ok := tb.ByName("eth0"); ok {
		t.Fatal("old name still resolves")
	}
	ch = tb.Apply(Update{Deleted: true, Link: Link{Index: 3}})
	if len(ch) != 1 || ch[0].Kind != Removed || ch[0].Link.Name != "wan0" {
		t.Fatalf("remove: %+v", ch)
	}
	if ch := tb.Apply(Update{Deleted: true, Link: Link{Index: 3}}); ch != nil {
		t.Fatalf("removing an unknown link: %+v", ch)
	}
}

func TestTableRecreatedWithSameName(t *testing.T) {
	tb := NewTable()
	tb.Apply(Update{Link: Link{Index: 3, Name: "veth0"}})
	tb.Apply(Update{Deleted: true, Link: Link{Index: 3, Name: "veth0"}})
	ch := tb.Apply(Update{Link: Link{Index: 9, Name: "veth0"}})
	if len(ch) != 1 || ch[0].Kind != Added || ch[0].Link.Index != 9 {
		t.Fatalf("re-create: %+v", ch)
	}
	if l, _ := tb.ByName("veth0"); l.Index != 9 {
		t.Fatalf("name resolves to ifindex %d, want 9", l.Index)
	}
}

func TestTableReplaceRemovesMissing(t *testing.T) {
	tb := NewTable()
	tb.Apply(Update{Link: Link{Index: 1, Name: "lo"}})
	tb.Apply(Update{Link: Link{Index: 2, Name: "eth0"}})
	ch := tb.Replace([]Link{{Index: 1, Name: "lo"}, {Index: 4, Name: "eth1"}})
	kinds := map[ChangeKind][]int{}
	for _, c := range ch {
		kinds[c.Kind] = append(kinds[c.Kind], c.Link.Index)
	}
	if len(kinds[Removed]) != 1 || kinds[Removed][0] != 2 || len(kinds[Added]) != 1 || kinds[Added][0] != 4 {
		t.Fatalf("replace: %+v", kinds)
	}
}

func TestTableSlaves(t *testing.T) {
	tb := NewTable()
	tb.Apply(Update{Link: Link{Index: 5, Name: "bond0", Kind: "bond"}})
	tb.Apply(Update{Link: Link{Index: 7, Name: "eth1", MasterIndex: 5}})
	tb.Apply(Update{Link: Link{Index: 6, Name: "eth0", MasterIndex: 5}})
	tb.Apply(Update{Link: Link{Index: 8, Name: "eth2"}})
	s := tb.Slaves(5)
	if len(s) != 2 || s[0].Name != "eth0" || s[1].Name != "eth1" {
		t.Fatalf("slaves: %+v", s)
	}
}
