package host

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Action scripts that misbehave, and what a script may
// hold (least privilege): each misbehaviour is bounded, logged, counted,
// and leaves the other interfaces' routes and scripts alone.

// scriptTopo is a netns with veth pairs whose first ends carry a route
// each, and a config giving each its own script.
type scriptTopo struct {
	ns  netns
	dir string
}

func newScriptTopo(t *testing.T, devs ...string) *scriptTopo {
	t.Helper()
	st := &scriptTopo{ns: newNetns(t), dir: t.TempDir()}
	for i, dev := range devs {
		routedVeth(t, st.ns, dev, peerOf(dev), "10.7"+strconv.Itoa(i)+".0", dstOf(i))
	}
	return st
}

// peerOf names a veth's other end: lbq0 -> lbq1.
func peerOf(dev string) string { return strings.TrimSuffix(dev, "0") + "1" }

func dstOf(i int) string { return "198.51.11" + strconv.Itoa(i) + ".0/24" }

// config writes a config of per-interface YAML sections.
func (st *scriptTopo) config(t *testing.T, sections map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("interfaces:\n")
	for dev, body := range sections {
		b.WriteString("  " + dev + ":\n")
		for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
			b.WriteString("    " + l + "\n")
		}
	}
	p := filepath.Join(st.dir, "linkbeat.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (st *scriptTopo) start(t *testing.T, cfg string) *daemon {
	t.Helper()
	return st.ns.start(t, "run", "--config", cfg, "--bpffs-dir", pinDir(t), "--state-dir", st.dir, "--no-script-on-exit")
}

// readPid waits for a script to write a pid into path.
func readPid(t *testing.T, path string) int {
	t.Helper()
	line := waitLines(t, path, 1, eventTimeout)[0]
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("%s: %q is not a pid", path, line)
	}
	return pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// killOnCleanup kills, by its id, a process a test script started.
func killOnCleanup(t *testing.T, pid int) {
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
}

func TestScriptHangIsKilledAndOtherInterfacesGoOn(t *testing.T) {
	st := newScriptTopo(t, "lbq0", "lbr0")
	hangPid, calls := filepath.Join(st.dir, "hang.pid"), filepath.Join(st.dir, "calls")
	hang := writeScript(t, `[ "$2" = down ] || exit 0`+"\necho $$ > "+hangPid+"\nexec sleep 60\n")
	rec := writeScript(t, `echo "$1 $2" >> `+calls+"\n")
	d := st.start(t, st.config(t, map[string]string{
		"lbq0": "script: " + hang + "\nscript_timeout: 4s",
		"lbr0": "script: " + rec,
	}))

	st.ns.ip(t, "link", "set", "lbq1", "down")
	pid := readPid(t, hangPid)
	killOnCleanup(t, pid)
	// While lbq0's script hangs, lbr0's carrier loss is handled in full.
	st.ns.ip(t, "link", "set", "lbr1", "down")
	waitFor(t, "lbr0's route withdrawn", func() bool { return !hasRoute(t, st.ns, dstOf(1)) })
	if lines := waitLines(t, calls, 1, eventTimeout); lines[0] != "lbr0 down" {
		t.Fatalf("lbr0's script ran as %q", lines[0])
	}
	if !alive(pid) || strings.Contains(d.stderr.String(), "timed out") {
		t.Fatal("lbr0 was handled only after lbq0's script ended: the hang held it up")
	}
	if hasRoute(t, st.ns, dstOf(0)) {
		t.Fatal("lbq0's route was not withdrawn: the routes waited for its script")
	}

	waitLog(t, d, `level=ERROR msg="action script timed out: killed its process group"`, 15*time.Second)
	waitFor(t, "the hung script's process gone", func() bool { return !alive(pid) })
	m := st.ns.scrape(t, defaultMetrics)
	for series, want := range map[string]float64{
		`linkbeat_script_runs_total{action="down",interface="lbq0",result="timeout"}`: 1,
		`linkbeat_script_timeouts_total{interface="lbq0"}`:                            1,
		`linkbeat_script_runs_total{action="down",interface="lbr0",result="success"}`: 1,
	} {
		if v, ok := sample(t, m, series); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	// And lbq0 itself goes on: its next change runs its script again.
	st.ns.ip(t, "link", "set", "lbq1", "up")
	waitFor(t, "lbq0's route restored", func() bool { return hasRoute(t, st.ns, dstOf(0)) })
	waitLog(t, d, `msg="action script done" script=`+hang+` ifname=lbq0 action=up`, eventTimeout)
}

func TestScriptChildrenCannotOutliveOrHoldIt(t *testing.T) {
	st := newScriptTopo(t, "lbc0")
	child, escaped, calls := filepath.Join(st.dir, "child.pid"), filepath.Join(st.dir, "escaped.pid"), filepath.Join(st.dir, "calls")
	// down: a child in the script's process group; up: one that leaves
	// it (setsid) and keeps the output pipe open.
	sc := writeScript(t, `echo "$2" >> `+calls+`
if [ "$2" = down ]; then
	sleep 60 & echo $! > `+child+`
else
	setsid sleep 60 & echo $! > `+escaped+`
	sleep 0.5
fi
exit 0
`)
	d := st.start(t, st.config(t, map[string]string{"lbc0": "script: " + sc}))

	st.ns.ip(t, "link", "set", "lbc1", "down")
	pid := readPid(t, child)
	killOnCleanup(t, pid)
	waitLog(t, d, `msg="action script done" script=`+sc+` ifname=lbc0 action=down`, eventTimeout)
	waitFor(t, "the script's child killed with its group", func() bool { return !alive(pid) })

	st.ns.ip(t, "link", "set", "lbc1", "up")
	esc := readPid(t, escaped)
	killOnCleanup(t, esc)
	waitLog(t, d, `msg="action script left a process outside its process group holding its output open: stopped reading it"`, eventTimeout)
	waitLog(t, d, `msg="action script done" script=`+sc+` ifname=lbc0 action=up`, eventTimeout)
	if !alive(esc) {
		t.Log("the escaped child is gone too (it got SIGPIPE)")
	}
	// The runner is free: the next change runs the script at once.
	st.ns.ip(t, "link", "set", "lbc1", "down")
	if lines := waitLines(t, calls, 3, eventTimeout); lines[2] != "down" {
		t.Fatalf("third run %q, want down", lines[2])
	}
}

// vmHWM is a process's peak resident memory in kB.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func TestScriptOutputFloodIsBounded(t *testing.T) {
	st := newScriptTopo(t, "lbo0")
	// 200 MB of output: one 1 MB line, then short lines.
	sc := writeScript(t, "head -c 1000000 /dev/zero | tr '\\0' x\necho\nyes flood | head -c 200000000\nexit 0\n")
	d := st.start(t, st.config(t, map[string]string{"lbo0": "script: " + sc + "\nscript_timeout: 60s"}))
	before := vmHWM(t, d.cmd.Process.Pid)

	st.ns.ip(t, "link", "set", "lbo1", "down")
	waitLog(t, d, `msg="action script done" script=`+sc, 60*time.Second)
	waitLog(t, d, `level=WARN msg="action script output truncated"`, eventTimeout)
	log := d.stderr.String()
	if n := strings.Count(log, `msg="action script output"`); n > 200 {
		t.Errorf("%d output lines logged for one run, want at most 200", n)
	}
	if !strings.Contains(log, "…(line truncated)") {
		t.Error("the 1 MB line was not logged truncated")
	}
	grew := vmHWM(t, d.cmd.Process.Pid) - before
	t.Logf("peak RSS grew by %d kB for 200 MB of script output", grew)
	if grew > 64*1024 {
		t.Errorf("peak RSS grew by %d kB: the output is not bounded", grew)
	}
}

func TestScriptNotExecutableIsAnError(t *testing.T) {
	st := newScriptTopo(t, "lbe0", "lbf0")
	p := filepath.Join(t.TempDir(), "action.sh")
	os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o644)
	calls := filepath.Join(st.dir, "calls")
	rec := writeScript(t, `echo "$1 $2" >> `+calls+"\n")
	d := st.start(t, st.config(t, map[string]string{"lbe0": "script: " + p, "lbf0": "script: " + rec}))

	st.ns.ip(t, "link", "set", "lbe1", "down")
	waitLog(t, d, `level=ERROR msg="action script did not start" script=`+p+` ifname=lbe0`, eventTimeout)
	if log := d.stderr.String(); !strings.Contains(log, "it is not executable: chmod +x it") {
		t.Errorf("the log does not say what to do:\n%s", log)
	}
	waitFor(t, "lbe0's route withdrawn regardless", func() bool { return !hasRoute(t, st.ns, dstOf(0)) })
	st.ns.ip(t, "link", "set", "lbf1", "down")
	if lines := waitLines(t, calls, 1, eventTimeout); lines[0] != "lbf0 down" {
		t.Fatalf("lbf0's script ran as %q", lines[0])
	}
	m := st.ns.scrape(t, defaultMetrics)
	if v, ok := sample(t, m, `linkbeat_script_runs_total{action="down",interface="lbe0",result="error"}`); !ok || v != 1 {
		t.Errorf("error runs of lbe0 = %v (present %v), want 1", v, ok)
	}
}

// capLine reads one capability set, or NoNewPrivs, from a saved
// /proc/self/status.
func capLine(t *testing.T, status, key string) uint64 {
	t.Helper()
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in\n%s", key, status)
	return 0
}

const capNetAdmin, capNetRaw = 1 << 12, 1 << 13

// checkScriptPrivileges runs a carrier loss through a daemon started by
// prefix and checks what its script held and saw.
func checkScriptPrivileges(t *testing.T, prefix []string, caps string, want uint64, wantBnd uint64) {
	t.Helper()
	st := newScriptTopo(t, "lbk0")
	out := t.TempDir()
	// A non-root daemon reads its config and writes its state here, and
	// its script writes its findings; t.TempDir's parent is 0700.
	for _, d := range []string{out, st.dir} {
		os.Chmod(d, 0o777)
		os.Chmod(filepath.Dir(d), 0o755)
	}
	status, env, mtu := filepath.Join(out, "status"), filepath.Join(out, "env"), filepath.Join(out, "mtu")
	scDir := t.TempDir()
	os.Chmod(scDir, 0o755)
	os.Chmod(filepath.Dir(scDir), 0o755)
	sc := filepath.Join(scDir, "action.sh")
	// CAP_NET_ADMIN is what `ip link set` needs: the script can still
	// manage the network.
	os.WriteFile(sc, []byte("#!/bin/sh\ncat /proc/self/status > "+status+"\nenv > "+env+
		"\nip link set lbk1 mtu 1400 && echo ok > "+mtu+"\n"), 0o755)
	section := "script: " + sc
	if caps != "" {
		section += "\nscript_capabilities: " + caps
	}
	cfg := st.config(t, map[string]string{"lbk0": section})
	st.ns.startWith(t, append([]string{"env", "LINKBEAT_TEST_SECRET=s3cret", "PATH=/tmp/evil:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, prefix...), binary(t),
		"run", "--config", cfg, "--bpffs-dir=", "--state-dir", st.dir, "--no-script-on-exit")

	st.ns.ip(t, "link", "set", "lbk1", "down")
	waitLines(t, env, 1, eventTimeout)
	b, _ := os.ReadFile(status)
	s := string(b)
	for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapInh"} {
		if got := capLine(t, s, k); got != want {
			t.Errorf("script's %s %#x, want %#x", k, got, want)
		}
	}
	if got := capLine(t, s, "CapBnd"); got != wantBnd {
		t.Errorf("script's CapBnd %#x, want %#x", got, wantBnd)
	}
	if capLine(t, s, "NoNewPrivs") != 1 {
		t.Error("script runs without no_new_privs")
	}
	e, _ := os.ReadFile(env)
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(e)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		vars[k] = v
	}
	if vars["PATH"] != "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" || vars["LANG"] != "C.UTF-8" || vars["IFPLUGD_CURRENT"] != "down" || vars["LINKBEAT_IFINDEX"] == "" {
		t.Errorf("script environment %v", vars)
	}
	if _, ok := vars["LINKBEAT_TEST_SECRET"]; ok {
		t.Error("the daemon's LINKBEAT_TEST_SECRET leaked into the script")
	}
	if want&capNetAdmin != 0 {
		waitLines(t, mtu, 1, eventTimeout)
		if !strings.Contains(st.ns.ip(t, "link", "show", "lbk1"), "mtu 1400") {
			t.Error("the script's `ip link set` did not take")
		}
	}
}

func TestScriptPrivilegesRootDaemon(t *testing.T) {
	t.Run("default", func(t *testing.T) { checkScriptPrivileges(t, nil, "", capNetAdmin, capNetAdmin) })
	t.Run("configured", func(t *testing.T) {
		checkScriptPrivileges(t, nil, "[CAP_NET_ADMIN, CAP_NET_RAW]", capNetAdmin|capNetRaw, capNetAdmin|capNetRaw)
	})
}

// The systemd unit's way: a system user with ambient capabilities and
// no CAP_SETPCAP, so the bounding set stays; no_new_privs and the
// lowered sets still leave the script CAP_NET_ADMIN alone.
func TestScriptPrivilegesNonRootDaemon(t *testing.T) {
	const caps = "+bpf,+perfmon,+net_admin"
	prefix := []string{"setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", caps, "--ambient-caps", caps,
		"--bounding-set", "-all," + caps, "--"}
	checkScriptPrivileges(t, prefix, "", capNetAdmin, capNetAdmin|1<<38|1<<39)
}
