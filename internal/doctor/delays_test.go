package doctor

import (
	"reflect"
	"testing"

	"github.com/linkbeat/linkbeat/internal/registry"
)

func TestKmsgText(t *testing.T) {
	msg, ok := KmsgText("4,1843,91823712,-;bond0: up delay (150) is not a multiple of miimon (100), value rounded to 100 ms\n SUBSYSTEM=net\n DEVICE=n5\n")
	if !ok || msg != "bond0: up delay (150) is not a multiple of miimon (100), value rounded to 100 ms" {
		t.Errorf("got %q, %v", msg, ok)
	}
	if _, ok := KmsgText("garbage"); ok {
		t.Error("a record without ';' parsed")
	}
}

func TestLogDelays(t *testing.T) {
	got := LogDelays([]string{
		"bond0 (uninitialized): up delay (150) is not a multiple of miimon (100), value rounded to 100 ms",
		"bond1 (unregistering): down delay (250) is not a multiple of miimon (100), value rounded to 200 ms",
		"bond2: down delay (50) is not a multiple of miimon (100), downdelay rounded to 0 ms",
		"bonding: Warning: updelay (130) is not a multiple of miimon (100), updelay rounded to 100 ms",
		"bond0: (slave eth0): link status definitely up, 10000 Mbps full duplex",
	})
	want := []DelayRequest{
		{Bond: "bond0", Which: "updelay", Requested: 150, Miimon: 100, Rounded: 100, Source: "kernel log"},
		{Bond: "bond1", Which: "downdelay", Requested: 250, Miimon: 100, Rounded: 200, Source: "kernel log"},
		{Bond: "bond2", Which: "downdelay", Requested: 50, Miimon: 100, Rounded: 0, Source: "kernel log"},
		{Which: "updelay", Requested: 130, Miimon: 100, Rounded: 100, Source: "kernel log"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseInterfaces(t *testing.T) {
	const file = `# bonds
source /etc/network/interfaces.d/*
source-directory interfaces.d

auto bond0
iface bond0 inet static
    address 10.0.0.5/24
    bond-slaves eth0 eth1
    bond-mode active-backup
    bond_miimon 100
    bond-updelay \
        150
    bond-downdelay 200

iface bond1 inet manual
    bond-updelay 300

allow-hotplug bond2
iface bond2 inet manual
    bond-miimon 100
    bond-downdelay 50
#   bond-updelay 70
mapping eth9
    script /bin/true
    bond-updelay 70
`
	reqs, incs := ParseInterfaces("/etc/network/interfaces", []byte(file))
	wantReqs := []DelayRequest{
		{Bond: "bond0", Which: "updelay", Requested: 150, Miimon: 100, Rounded: -1, Source: "/etc/network/interfaces:11"},
		{Bond: "bond0", Which: "downdelay", Requested: 200, Miimon: 100, Rounded: -1, Source: "/etc/network/interfaces:13"},
		{Bond: "bond2", Which: "downdelay", Requested: 50, Miimon: 100, Rounded: -1, Source: "/etc/network/interfaces:21"},
	}
	if !reflect.DeepEqual(reqs, wantReqs) {
		t.Errorf("requests:\n got  %+v\n want %+v", reqs, wantReqs)
	}
	wantIncs := []Include{{Pattern: "/etc/network/interfaces.d/*"}, {Pattern: "interfaces.d", Dir: true}}
	if !reflect.DeepEqual(incs, wantIncs) {
		t.Errorf("includes: got %+v, want %+v", incs, wantIncs)
	}
}

func TestIncludeAllowed(t *testing.T) {
	for name, want := range map[string]bool{"bond0": true, "50-uplinks": true, "x_y": true, "bond0.dpkg-old": false, "a.cfg": false, "": false} {
		if got := IncludeAllowed(name); got != want {
			t.Errorf("IncludeAllowed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseModprobe(t *testing.T) {
	got := ParseModprobe("/etc/modprobe.d/bonding.conf", []byte("# seed\nalias bond0 bonding\noptions bonding mode=active-backup \\\n  miimon=100 updelay=150\noptions bonding downdelay=300\noptions e1000e InterruptThrottleRate=3000\n"))
	want := []DelayRequest{
		{Which: "updelay", Requested: 150, Miimon: 100, Rounded: -1, Source: "/etc/modprobe.d/bonding.conf:3"},
		{Which: "downdelay", Requested: 300, Miimon: 100, Rounded: -1, Source: "/etc/modprobe.d/bonding.conf:5"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got := ParseModprobe("x", []byte("options bonding updelay=150\n")); len(got) != 0 {
		t.Errorf("without miimon: got %+v, want nothing", got)
	}
}

func TestDelayRounded(t *testing.T) {
	// bond0 as the kernel left it after "updelay 150 miimon 100".
	live := func() *Snapshot {
		return abBond("active-backup", func(b *registry.Bond) { b.UpDelay, b.DownDelay = 100, 200 })
	}
	logged := DelayRequest{Bond: "bond0", Which: "updelay", Requested: 150, Miimon: 100, Rounded: 100, Source: "kernel log"}
	t.Run("kernel log, bond as rounded", func(t *testing.T) {
		s := live()
		s.Delays = []DelayRequest{logged}
		f := only(t, checkDelays, s, "bond-delay-rounded")[0]
		mustContain(t, "summary", f.Summary, "bond0: updelay 150 ms is not a multiple of miimon 100 ms", "kernel uses 100 ms")
		mustContain(t, "fix", f.Fix, "ip link set bond0 type bond updelay 200` (or 100)", "ifupdown")
	})
	t.Run("kernel log and file: one finding, both sources", func(t *testing.T) {
		s := live()
		file := logged
		file.Rounded, file.Source = -1, "/etc/network/interfaces:11"
		s.Delays = []DelayRequest{logged, file, logged}
		f := only(t, checkDelays, s, "bond-delay-rounded")[0]
		mustContain(t, "why", f.Why, "kernel log, /etc/network/interfaces:11")
		mustContain(t, "fix", f.Fix, "write the same in /etc/network/interfaces:11")
	})
	t.Run("kernel log is stale: the bond was changed since", func(t *testing.T) {
		s := abBond("active-backup", func(b *registry.Bond) { b.UpDelay = 200 })
		s.Delays = []DelayRequest{logged}
		only(t, checkDelays, s)
	})
	t.Run("kernel log about a bond that is gone", func(t *testing.T) {
		s := live()
		gone := logged
		gone.Bond = "bond7"
		s.Delays = []DelayRequest{gone}
		only(t, checkDelays, s)
	})
	t.Run("rounded to zero", func(t *testing.T) {
		s := abBond("active-backup", nil)
		s.Delays = []DelayRequest{{Bond: "bond0", Which: "downdelay", Requested: 50, Miimon: 100, Rounded: 0, Source: "kernel log"}}
		f := only(t, checkDelays, s, "bond-delay-rounded")[0]
		mustContain(t, "summary", f.Summary, "no downdelay at all")
	})
	t.Run("module options", func(t *testing.T) {
		s := clean()
		s.Delays = []DelayRequest{{Which: "updelay", Requested: 150, Miimon: 100, Rounded: -1, Source: "/etc/modprobe.d/b.conf:1"}}
		f := only(t, checkDelays, s, "bond-delay-rounded")[0]
		if f.Subject != "bonding module options" {
			t.Errorf("subject %q", f.Subject)
		}
	})
	t.Run("multiples", func(t *testing.T) {
		s := live()
		s.Delays = []DelayRequest{{Bond: "bond0", Which: "updelay", Requested: 200, Miimon: 100, Rounded: -1, Source: "f:1"}}
		only(t, checkDelays, s)
	})
}
