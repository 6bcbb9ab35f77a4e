package doctor

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DelayRequest is an updelay or downdelay someone asked a bond for. The
// kernel keeps these delays as whole miimon ticks: it rounds a value that
// is not a multiple of miimon down, says so once in the kernel log, and
// from then on reports the rounded value. So the request is found where
// it was made: in the kernel log (any tool) or in a config file.
type DelayRequest struct {
	// Bond is the bond's name; "" for the bonding module's options,
	// which apply to every bond created afterwards.
	Bond string `json:"bond"`
	// Which is "updelay" or "downdelay".
	Which string `json:"which"`
	// Requested and Miimon are in ms.
	Requested int `json:"requested"`
	Miimon    int `json:"miimon"`
	// Rounded is what the kernel said it used (-1: not known).
	Rounded int `json:"rounded"`
	// Source is "kernel log", or FILE:LINE.
	Source string `json:"source"`
}

func (d DelayRequest) fromLog() bool { return d.Source == kernelLog }

const kernelLog = "kernel log"

// The bonding driver's messages (drivers/net/bonding/bond_options.c and,
// for module options, bond_main.c), in their 4.x and current forms:
//
//	bond0: up delay (150) is not a multiple of miimon (100), value rounded to 100 ms
//	bond0: up delay (150) is not a multiple of miimon (100), updelay rounded to 100 ms
//	bonding: Warning: updelay (150) is not a multiple of miimon (100), updelay rounded to 100 ms
var (
	kmsgBondDelay   = regexp.MustCompile(`^(\S+?)(?: \([a-z ]+\))?: (up|down) ?delay \((\d+)\) is not a multiple of miimon \((\d+)\), \w+ rounded to (\d+) ms`)
	kmsgModuleDelay = regexp.MustCompile(`^bonding: Warning: (up|down)delay \((\d+)\) is not a multiple of miimon \((\d+)\), \w+ rounded to (\d+) ms`)
)

// KmsgText returns the message of one /dev/kmsg record
// ("PRI,SEQ,USEC,FLAGS;message\n KEY=VALUE..."), or false.
func KmsgText(rec string) (string, bool) {
	_, msg, ok := strings.Cut(rec, ";")
	if !ok {
		return "", false
	}
	msg, _, _ = strings.Cut(msg, "\n")
	return msg, true
}

// LogDelays finds the bonding driver's rounding warnings in kernel log
// messages, oldest first.
func LogDelays(msgs []string) []DelayRequest {
	var out []DelayRequest
	for _, m := range msgs {
		if g := kmsgBondDelay.FindStringSubmatch(m); g != nil {
			out = append(out, DelayRequest{Bond: g[1], Which: g[2] + "delay", Requested: atoi(g[3]), Miimon: atoi(g[4]),
				Rounded: atoi(g[5]), Source: kernelLog})
			continue
		}
		if g := kmsgModuleDelay.FindStringSubmatch(m); g != nil {
			out = append(out, DelayRequest{Which: g[1] + "delay", Requested: atoi(g[2]), Miimon: atoi(g[3]),
				Rounded: atoi(g[4]), Source: kernelLog})
		}
	}
	return out
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// logicalLines splits a config file into lines, joining those continued
// with a trailing backslash; each keeps the number of its first line.
func logicalLines(data []byte) (lines []string, nums []int) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		t := sc.Text()
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(t, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(t)
		lines, nums = append(lines, cur.String()), append(nums, start)
		cur.Reset()
	}
	if cur.Len() > 0 {
		lines, nums = append(lines, cur.String()), append(nums, start)
	}
	return lines, nums
}

// Include is a "source" or "source-directory" line of an ifupdown file.
type Include struct {
	// Pattern is a glob (source) or a directory (source-directory), as
	// written.
	Pattern string
	Dir     bool
}

// startsStanza says whether an ifupdown line starting with key starts a
// new stanza, ending the current one.
func startsStanza(key string) bool {
	switch key {
	case "iface", "mapping", "auto", "source", "source-directory", "rename":
		return true
	}
	return strings.HasPrefix(key, "allow-")
}

// ParseInterfaces reads an ifupdown interfaces(5) file: the delays its
// bond stanzas ask for (bond-miimon, bond-updelay, bond-downdelay, or
// with underscores), and the files it includes. name is used in Source.
func ParseInterfaces(name string, data []byte) ([]DelayRequest, []Include) {
	var (
		out      []DelayRequest
		incs     []Include
		iface    string
		miimon   = -1
		pending  []DelayRequest
		finished = func() {
			for _, p := range pending {
				if miimon > 0 {
					p.Miimon = miimon
					out = append(out, p)
				}
			}
			iface, miimon, pending = "", -1, nil
		}
	)
	lines, nums := logicalLines(data)
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		key := f[0]
		if startsStanza(key) {
			finished()
			switch {
			case key == "iface" && len(f) > 1:
				iface = f[1]
			case key == "source" && len(f) > 1:
				incs = append(incs, Include{Pattern: f[1]})
			case key == "source-directory" && len(f) > 1:
				incs = append(incs, Include{Pattern: f[1], Dir: true})
			}
			continue
		}
		if iface == "" || len(f) < 2 {
			continue
		}
		v := atoi(f[1])
		switch strings.ReplaceAll(key, "_", "-") {
		case "bond-miimon":
			miimon = v
		case "bond-updelay", "bond-downdelay":
			which := strings.TrimPrefix(strings.ReplaceAll(key, "_", "-"), "bond-")
			if v > 0 {
				pending = append(pending, DelayRequest{Bond: iface, Which: which, Requested: v, Rounded: -1,
					Source: fmt.Sprintf("%s:%d", name, nums[i])})
			}
		}
	}
	finished()
	return out, incs
}

// IncludeAllowed is ifupdown's rule for the files source-directory
// reads: names of letters, digits, underscores and hyphens only.
func IncludeAllowed(file string) bool {
	base := path.Base(file)
	return base != "" && strings.IndexFunc(base, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) < 0
}

// ParseModprobe reads a modprobe.d(5) file for the bonding module's
// options (options bonding miimon=100 updelay=150 ...), which become the
// defaults of every bond created afterwards.
func ParseModprobe(name string, data []byte) []DelayRequest {
	miimon := -1
	var pending []DelayRequest
	lines, nums := logicalLines(data)
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "options" || f[1] != "bonding" {
			continue
		}
		for _, kv := range f[2:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			switch k {
			case "miimon":
				miimon = atoi(v)
			case "updelay", "downdelay":
				if n := atoi(v); n > 0 {
					pending = append(pending, DelayRequest{Which: k, Requested: n, Rounded: -1, Source: fmt.Sprintf("%s:%d", name, nums[i])})
				}
			}
		}
	}
	var out []DelayRequest
	for _, p := range pending {
		if miimon > 0 {
			p.Miimon = miimon
			out = append(out, p)
		}
	}
	return out
}

// liveDelay is the bond's current updelay or downdelay.
func liveDelay(s *Snapshot, bond, which string) (delay, miimon int, ok bool) {
	l, found := s.linkByName(bond)
	if !found || l.Bond == nil {
		return 0, 0, false
	}
	if which == "updelay" {
		return l.Bond.UpDelay, l.Bond.Miimon, true
	}
	return l.Bond.DownDelay, l.Bond.Miimon, true
}

func checkDelays(s *Snapshot) []Finding {
	type key struct {
		bond, which         string
		requested, miimonMs int
	}
	sources := map[key][]string{}
	var order []key
	for _, d := range s.Delays {
		if d.Miimon <= 0 || d.Requested <= 0 || d.Requested%d.Miimon == 0 {
			continue
		}
		if d.fromLog() && d.Bond != "" {
			// The log outlives the bond's settings: believe it only while
			// the bond still runs with what the kernel made of it.
			delay, miimon, ok := liveDelay(s, d.Bond, d.Which)
			if !ok || miimon != d.Miimon || delay != d.Requested/d.Miimon*d.Miimon {
				continue
			}
		}
		k := key{d.Bond, d.Which, d.Requested, d.Miimon}
		if _, seen := sources[k]; !seen {
			order = append(order, k)
		}
		if !slices.Contains(sources[k], d.Source) {
			sources[k] = append(sources[k], d.Source)
		}
	}
	var out []Finding
	for _, k := range order {
		rounded := k.requested / k.miimonMs * k.miimonMs
		subject, target := k.bond, k.bond
		if k.bond == "" {
			subject, target = "bonding module options", "BOND"
		}
		effect := fmt.Sprintf("the kernel uses %d ms", rounded)
		if rounded == 0 {
			effect = "the kernel uses 0 ms: no " + k.which + " at all"
		}
		waits := "before it uses a slave whose link came back, so a flapping link is taken back sooner than planned"
		if k.which == "downdelay" {
			waits = "before it gives up a slave whose link went down, so a brief loss is ridden out for less time than planned (or a dead slave dropped sooner)"
		}
		alt := ""
		if rounded > 0 {
			alt = fmt.Sprintf(" (or %d)", rounded)
		}
		where := "in whatever sets the bond up (ifupdown, systemd-networkd, NetworkManager, netplan, modprobe.d)"
		var files []string
		for _, src := range sources[k] {
			if src != kernelLog {
				files = append(files, src)
			}
		}
		if len(files) > 0 {
			where = "in " + strings.Join(files, ", ")
		}
		out = append(out, Finding{
			ID: "bond-delay-rounded", Severity: Warning, Subject: subject, Guide: guideBonding,
			Summary: fmt.Sprintf("%s: %s %d ms is not a multiple of miimon %d ms: %s", subject, k.which, k.requested, k.miimonMs, effect),
			Why: fmt.Sprintf("The bonding driver counts %s in miimon ticks and rounds down what it is given, with only a kernel-log warning; "+
				"the bond waits %d ms instead of %d %s. Found in: %s.", k.which, rounded, k.requested, waits, strings.Join(sources[k], ", ")),
			Fix: fmt.Sprintf("Ask for a multiple of miimon: `ip link set %s type bond %s %d`%s, and write the same %s.",
				target, k.which, rounded+k.miimonMs, alt, where),
		})
	}
	return out
}
