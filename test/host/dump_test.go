package host

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/linkbeat/linkbeat/internal/registry"
)

// TestDumpsUnderLinkStorm dumps the link table (registry.Dump) in a loop
// while another process creates and deletes veths in the same namespace
// as fast as it can. (This host has no bonding module, so the bond's
// slave dump, which retries the same way, is left to the VM tests.) The kernel interrupts dumps then (NLM_F_DUMP_INTR, seen here by a
// plain netlink.LinkList); linkbeat's dumps must never fail, and must
// never miss the links that stay.
func TestDumpsUnderLinkStorm(t *testing.T) {
	ns := newNetns(t)
	// Enough links that a dump takes several messages, so the table can
	// change between them.
	const stable = 120
	var cmds []string
	for i := range stable {
		cmds = append(cmds, fmt.Sprintf("link add dsa%d type veth peer name dsb%d", i, i))
	}
	ns.batch(t, cmds...)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		storm(ns, stop)
	}()
	defer func() { close(stop); wg.Wait() }()

	var dumps, interrupted int
	ns.do(t, func() {
		// The loop's length is a bound on the work, not a judgement.
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end) && (dumps < 300 || interrupted < 5); dumps++ {
			if _, err := netlink.LinkList(); errors.Is(err, netlink.ErrDumpInterrupted) {
				interrupted++
			}
			links, err := registry.Dump()
			if err != nil {
				t.Fatalf("registry.Dump under a link storm (dump %d): %v", dumps, err)
			}
			if n := countPrefix(links, "dsa"); n != stable {
				t.Fatalf("registry.Dump (dump %d) lists %d of the %d links that stay", dumps, n, stable)
			}
		}
	})
	t.Logf("%d dumps of the links; %d plain netlink.LinkList dumps interrupted meanwhile", dumps, interrupted)
	if interrupted == 0 {
		t.Fatal("the storm never interrupted a plain dump: this run did not test retrying")
	}
}

// storm creates and deletes veths in ns until stop is closed.
func storm(ns netns, stop <-chan struct{}) {
	var add, del []string
	for i := range 20 {
		add = append(add, fmt.Sprintf("link add dst%d type veth peer name dsu%d", i, i))
		del = append(del, fmt.Sprintf("link del dst%d", i))
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		for _, cmds := range [][]string{add, del} {
			cmd := exec.Command("ip", "-n", string(ns), "-force", "-batch", "-")
			cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
			cmd.Run() // a batch that fails halfway still churns the table
		}
	}
}

func countPrefix(links []registry.Link, prefix string) int {
	n := 0
	for _, l := range links {
		if strings.HasPrefix(l.Name, prefix) {
			n++
		}
	}
	return n
}

// batch runs ip commands in ns in one process.
func (ns netns) batch(t *testing.T, cmds ...string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", string(ns), "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s -batch: %v\n%s", ns, err, out)
	}
}
