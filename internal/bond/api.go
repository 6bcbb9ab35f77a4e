// Package bond switches active-backup (and tlb/alb) bonds to a live slave
// on the driver's carrier event, before the bonding driver's own miimon or
// ARP monitor would, without ever fighting the bond: it honours downdelay,
// updelay, primary and primary_reselect, and leaves the switch to the bond
// whenever the kernel would refuse it.
//
// Where the decision is made: decide.go (pure). Where the kernel is changed:
// switcher.go. The Manager (manager.go) owns the timers and the state, on
// one goroutine.
package bond

import "time"

// Reasons a switch is made, as the failover metric's label.
const (
	ReasonCarrier  = "carrier" // the active slave lost carrier
	ReasonPath     = "path"    // the active slave stopped hearing its ARP targets
	ReasonPrimary  = "primary" // the primary came back (primary_reselect)
	ReasonBond     = "bond"    // the bonding driver switched by itself
	ReasonNoActive = "no_active"
)

// Failover is one change of a bond's active slave.
type Failover struct {
	Bond   string `json:"bond"`
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	// By is "linkbeat" when linkbeat made the switch, "bond" when the
	// driver did.
	By string `json:"by"`
	// KernelNs is the triggering event's CLOCK_MONOTONIC time.
	KernelNs int64 `json:"kernel_ns"`
	// Duration is from the kernel event to the switch being confirmed.
	Duration time.Duration `json:"duration_ns"`
	At       time.Time     `json:"at"`
}

// Declined is a switch linkbeat wanted but left to the bond.
type Declined struct {
	Bond   string
	Slave  string
	Reason string // "no_live_slave", "target_not_up", "no_current_active", "kernel_refused", ...
}

// Observer is told what the manager did, for metrics and status. Its
// methods are called from the manager's goroutine and must not block.
type Observer interface {
	Failover(Failover)
	Declined(Declined)
}

// PathReport is the path monitor's verdict on one slave: whether it still
// hears its ARP targets.
type PathReport struct {
	BondIndex  int
	SlaveIndex int
	Alive      bool
	// KernelNs is when the verdict was reached (CLOCK_MONOTONIC).
	KernelNs int64
}

// FastView is a bond as the manager sees it, for the fast path
// (internal/fastpath), which keeps the kernel's candidate table from it.
type FastView struct {
	Index       int
	Name        string
	Mode        string
	FailOverMac string
	DownDelay   time.Duration
	Active      int
	Primary     int
	// On is the bond's fast_path setting.
	On bool
	// AdAggregator is 802.3ad's active aggregator (0: none or not 802.3ad).
	AdAggregator int
	// Slaves are in the bond's own order.
	Slaves []FastSlave
}

// FastSlave is one slave in a FastView.
type FastSlave struct {
	Index   int
	Name    string
	AdminUp bool
	BondUp  bool
	Carrier bool
	// Aggregator is the 802.3ad aggregator the port is in (0: none).
	Aggregator int
	// Backup is the bond's own backup flag: in 802.3ad a port it does
	// not transmit on (not enabled in the active aggregator).
	Backup bool
	// NoticedCarrier is false once a netlink notice of the slave says
	// operstate down, where Carrier may come earlier from the driver's
	// call. Linkwatch sets the operstate and sends its first notice with
	// it after the NETDEV_CHANGE notifiers, in which a hash-mode bond
	// rebuilds its transmit array without the slave.
	NoticedCarrier bool
}

// FastPath hears of every bond the manager knows, after each decision,
// and of each bond's removal. Its methods are called from the manager's
// goroutine and must not block.
type FastPath interface {
	Bond(FastView)
	Gone(bondIndex int)
}
