package source

import (
	"testing"

	"github.com/linkbeat/linkbeat/internal/registry"
)

func TestMonitors(t *testing.T) {
	lo := registry.Link{Index: 1, Name: "lo", Loopback: true}
	eth0 := registry.Link{Index: 2, Name: "eth0"}
	port := registry.Link{Index: 3, Name: "eth1", MasterIndex: 10}
	for _, c := range []struct {
		ifaces []string
		l      registry.Link
		master string
		want   bool
	}{
		{nil, eth0, "", true},
		{nil, lo, "", false},
		{[]string{"eth0"}, eth0, "", true},
		{[]string{"eth9"}, eth0, "", false},
		{[]string{"bond0"}, port, "bond0", true},
		{[]string{"eth0"}, port, "bond0", false},
	} {
		if got := Monitors(Config{Interfaces: c.ifaces}, c.l, c.master); got != c.want {
			t.Errorf("Monitors(%v, %s, master %q) = %v, want %v", c.ifaces, c.l.Name, c.master, got, c.want)
		}
	}
}
