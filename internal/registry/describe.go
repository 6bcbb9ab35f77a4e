package registry

// Description is a link as `linkbeat links --json` prints it.
type Description struct {
	Ifindex int              `json:"ifindex"`
	Name    string           `json:"name"`
	Kind    string           `json:"kind"`
	AdminUp bool             `json:"admin_up"`
	Carrier bool             `json:"carrier"`
	Master  string           `json:"master"`
	Bond    *BondDescription `json:"bond,omitempty"`
	Slave   *BondSlave       `json:"bond_slave,omitempty"`
	Bridge  *BridgePort      `json:"bridge_port,omitempty"`
}

// BondDescription names slaves rather than giving ifindexes.
type BondDescription struct {
	Bond
	Slaves      []string `json:"slaves"`
	ActiveSlave string   `json:"active_slave"`
	Primary     string   `json:"primary"`
}

// Describe renders the table for people and scripts.
func (t *Table) Describe() []Description {
	name := func(idx int) string {
		if l, ok := t.Get(idx); ok && idx != 0 {
			return l.Name
		}
		return ""
	}
	var out []Description
	for _, l := range t.Links() {
		d := Description{Ifindex: l.Index, Name: l.Name, Kind: l.Kind, AdminUp: l.AdminUp, Carrier: l.Carrier,
			Master: name(l.MasterIndex), Slave: l.BondSlave, Bridge: l.BridgePort}
		if l.Bond != nil {
			b := &BondDescription{Bond: *l.Bond, ActiveSlave: name(l.Bond.ActiveSlave), Primary: name(l.Bond.Primary), Slaves: []string{}}
			for _, s := range t.Slaves(l.Index) {
				b.Slaves = append(b.Slaves, s.Name)
			}
			d.Bond = b
		}
		out = append(out, d)
	}
	return out
}
