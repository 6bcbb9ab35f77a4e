package traffic

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/linkbeat/linkbeat/gen"
)

// Pin names under the pin directory. Maps keep their BPF names, so bpftool
// shows the same name as the pin; programs and links get a prefix saying
// what they are. Nothing else in a bpffs is ever touched: every removal
// goes through ownPin.
const (
	MapCounters  = gen.TrafficMapIfStats   // per-CPU counters, by ifindex
	MapLinkState = gen.TrafficMapLinkState // the daemon's record of carrier, by ifindex

	progPrefix  = "prog_"
	tcxPrefix   = "link_tcx_"
	rawTPPrefix = "link_raw_tp_"

	// The path monitor's (internal/pathmon) pins in the same directory:
	// its ARP reply and NA counters, and its programs while they may be
	// attached, by which cleanup finds the clsact filters (linkbeat-arp,
	// linkbeat-ns) a killed daemon left.
	MapArpReplies = gen.ArpMapArpReplies
	ProgArp       = progPrefix + gen.ArpProgArpIngress
	MapNSReplies  = gen.NsMapNsReplies
	ProgNS        = progPrefix + gen.NsProgNsIngress
)

// pathPins are the path monitor's pins.
var pathPins = []string{MapArpReplies, ProgArp, MapNSReplies, ProgNS}

// pinnedMaps are the maps pinned by name, in the order they are checked.
var pinnedMaps = []string{MapCounters, MapLinkState}

// pinnedProgs are the programs pinned as prog_<name>.
var pinnedProgs = []string{gen.TrafficProgTcIngress, gen.TrafficProgTcEgress, gen.TrafficProgXmitErrors, gen.TrafficProgXmitTimeouts}

// tracepoints are the raw tracepoints and their programs, pinned as
// link_raw_tp_<tracepoint>.
var tracepoints = []struct{ name, prog string }{
	{"net_dev_xmit", gen.TrafficProgXmitErrors},
	{"net_dev_xmit_timeout", gen.TrafficProgXmitTimeouts},
}

var tcxPinRE = regexp.MustCompile(`^` + tcxPrefix + `(ingress|egress)_([0-9]+)$`)

// ownPin reports whether name is one linkbeat creates in its pin directory.
func ownPin(name string) bool {
	if slices.Contains(pinnedMaps, name) || tcxPinRE.MatchString(name) || slices.Contains(pathPins, name) {
		return true
	}
	for _, p := range pinnedProgs {
		if name == progPrefix+p {
			return true
		}
	}
	for _, tp := range tracepoints {
		if name == rawTPPrefix+tp.name {
			return true
		}
	}
	return false
}

func tcxPinName(dir string, ifindex int) string {
	return tcxPrefix + dir + "_" + strconv.Itoa(ifindex)
}

// parseTCXPin returns the direction and ifindex a tcx link pin is for.
func parseTCXPin(name string) (dir string, ifindex int, ok bool) {
	m := tcxPinRE.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false
	}
	idx, err := strconv.Atoi(m[2])
	if err != nil {
		return "", 0, false
	}
	return m[1], idx, true
}

// checkBpffs refuses a pin directory that is not on a bpf filesystem, and
// the root of one: linkbeat keeps to a directory of its own.
func checkBpffs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin directory %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpf filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`)", dir)
	}
	var parent unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(filepath.Clean(dir)), &parent); err != nil || parent.Type != unix.BPF_FS_MAGIC {
		if boundSubdir(dir) {
			return nil
		}
		return fmt.Errorf("pin directory %s is the root of a bpf filesystem: give linkbeat a directory of its own, such as %s", dir, filepath.Join(dir, "linkbeat"))
	}
	return nil
}

// boundSubdir reports whether dir is a bind mount of a directory inside a
// bpf filesystem rather than its root: the systemd unit gives the service
// user its pin directory that way, since /sys/fs/bpf is root's alone
// (deploy/systemd/linkbeat.service).
func boundSubdir(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	bound := false
	// The last mount on a path is the one in force.
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 5 || sep+1 >= len(f) || unescapeMount(f[4]) != abs {
			continue
		}
		bound = f[sep+1] == "bpf" && unescapeMount(f[3]) != "/"
	}
	return bound
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// checkPinnedMaps compares each pinned map with what this build needs and
// removes the pins of those that changed, so that loading creates them
// afresh. It returns the replaced maps with the reason for each.
func checkPinnedMaps(dir string, spec *ebpf.CollectionSpec) (map[string]string, error) {
	replaced := map[string]string{}
	for _, name := range pinnedMaps {
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		reason := mapChange(spec.Maps[name], m)
		m.Close()
		if reason == "" {
			continue
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove outdated pinned map %s: %w", path, err)
		}
		replaced[name] = reason
	}
	return replaced, nil
}

// mapChange says how a pinned map differs from the spec, or "" when this
// build can use it: same type, sizes and flags, and the same field layout
// of key and value as their BTF describes them.
func mapChange(spec *ebpf.MapSpec, m *ebpf.Map) string {
	if err := spec.Compatible(m); err != nil {
		return err.Error()
	}
	info, err := m.Info()
	if err != nil {
		return fmt.Sprintf("cannot read map info: %v", err)
	}
	id, ok := info.BTFID()
	if !ok {
		return "the pinned map has no BTF"
	}
	h, err := btf.NewHandleFromID(id)
	if errors.Is(err, unix.EPERM) {
		// BTF by ID needs CAP_SYS_ADMIN, which the systemd unit does not
		// grant: type, sizes and flags matched, which is what can be
		// checked; replacing the map would lose its counters at each restart.
		return ""
	}
	if err != nil {
		return fmt.Sprintf("cannot read the pinned map's BTF: %v", err)
	}
	defer h.Close()
	old, err := h.Spec(nil)
	if err != nil {
		return fmt.Sprintf("cannot parse the pinned map's BTF: %v", err)
	}
	for _, t := range []struct {
		what string
		typ  btf.Type
	}{{"key", spec.Key}, {"value", spec.Value}} {
		if d := typeChange(old, t.typ); d != "" {
			return t.what + ": " + d
		}
	}
	return ""
}

// typeChange compares a named struct of this build with the type of the
// same name in the pinned map's BTF. Unnamed and scalar types are covered
// by the size check of Compatible.
func typeChange(old *btf.Spec, cur btf.Type) string {
	st, ok := btf.UnderlyingType(cur).(*btf.Struct)
	if !ok || st.Name == "" {
		return ""
	}
	var was *btf.Struct
	if err := old.TypeByName(st.Name, &was); err != nil {
		return fmt.Sprintf("struct %s is not in the pinned map's BTF", st.Name)
	}
	return LayoutDiff(was, st)
}

// LayoutDiff describes how two versions of a struct differ in size, field
// names, offsets or field sizes; "" when they are laid out the same.
func LayoutDiff(old, cur *btf.Struct) string {
	if old.Size != cur.Size {
		return fmt.Sprintf("struct %s: size %d changed to %d", cur.Name, old.Size, cur.Size)
	}
	if len(old.Members) != len(cur.Members) {
		return fmt.Sprintf("struct %s: %d fields changed to %d", cur.Name, len(old.Members), len(cur.Members))
	}
	for i := range cur.Members {
		o, c := old.Members[i], cur.Members[i]
		if o.Name != c.Name {
			return fmt.Sprintf("struct %s: field %d %q changed to %q", cur.Name, i, o.Name, c.Name)
		}
		if o.Offset != c.Offset || o.BitfieldSize != c.BitfieldSize {
			return fmt.Sprintf("struct %s: field %s moved from bit %d to %d", cur.Name, c.Name, o.Offset, c.Offset)
		}
		oldSize, err1 := btf.Sizeof(o.Type)
		curSize, err2 := btf.Sizeof(c.Type)
		if err1 != nil || err2 != nil || oldSize != curSize {
			return fmt.Sprintf("struct %s: field %s changed size", cur.Name, c.Name)
		}
	}
	return ""
}

// replacePin pins obj at path, removing what was pinned there before.
func replacePin(path string, pin func(string) error) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove old pin %s: %w", path, err)
	}
	if err := pin(path); err != nil {
		return fmt.Errorf("pin %s: %w", path, err)
	}
	return nil
}

// pinnedProgramIDs returns the IDs of the programs pinned in dir under
// names, so that the clsact filters attached with them, by this run or an
// earlier one, can be told from anyone else's.
func pinnedProgramIDs(dir string, names []string) map[int]bool {
	ids := map[int]bool{}
	for _, name := range names {
		if id, ok := PinnedProgramID(filepath.Join(dir, name)); ok {
			ids[id] = true
		}
	}
	return ids
}

// PinnedProgramID is the ID of the program pinned at path; false when
// there is none.
func PinnedProgramID(path string) (int, bool) {
	prog, err := ebpf.LoadPinnedProgram(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, false
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return 0, false
	}
	id, ok := info.ID()
	return int(id), ok
}

// progPins are the pin names of the TC and tracepoint programs.
func progPins() []string {
	out := make([]string, 0, len(pinnedProgs))
	for _, p := range pinnedProgs {
		out = append(out, progPrefix+p)
	}
	return out
}
