package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/linkbeat/linkbeat/internal/monotime"
	"github.com/linkbeat/linkbeat/internal/source"
	"github.com/linkbeat/linkbeat/internal/status"
)

// notifier speaks systemd's notify protocol (sd_notify(3)) for `run`
// (deploy/systemd/linkbeat.service, docs/systemd.md). Without
// NOTIFY_SOCKET it does nothing and asks for no timer.
type notifier struct {
	log *slog.Logger
	on  bool
	// watchdog is WATCHDOG_USEC: systemd kills linkbeat when no ping
	// came for this long. 0: no watchdog.
	watchdog time.Duration

	// STATUS= is the daemon's part (set at ready) and the exporter's
	// (while an address does not listen), sent whole on each change.
	mu       sync.Mutex
	running  string
	exporter string
}

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log, on: os.Getenv("NOTIFY_SOCKET") != ""}
	// Unset, so that action scripts do not think they are watched.
	wd, err := sddaemon.SdWatchdogEnabled(true)
	if err != nil {
		log.Warn("ignoring the systemd watchdog setting", "err", err)
	}
	if n.on {
		n.watchdog = wd
	}
	return n
}

// ready is the agent's Ready hook: it is called once the start-up inputs
// are carried out (the routes of links found without carrier are
// withdrawn), so READY=1 goes out when the state linkbeat promises is in
// force (scripts may still be running).
func (n *notifier) ready() func(monitored int, f source.Features) {
	if !n.on {
		return nil
	}
	return func(monitored int, f source.Features) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.running = fmt.Sprintf("monitoring %d interfaces; carrier source %s; tc %s", monitored, f.CarrierSource, f.TCMechanism)
		// STATUS= is read when READY goes, so that it has the exporter's
		// latest state.
		n.send(sddaemon.SdNotifyReady + "\n" + n.statusLocked())
	}
}

// exporterChanged is the exporter's listen state, for STATUS=. It is sent
// at once (not through the action queue): it is no promise about routes.
func (n *notifier) exporterChanged(ls []status.Listener) {
	var down []string
	for _, l := range ls {
		if !l.Listening {
			down = append(down, fmt.Sprintf("metrics NOT served on %s: %s (retrying)", l.Address, l.Error))
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	part := strings.Join(down, "; ")
	if part == n.exporter {
		return
	}
	n.exporter = part
	n.send(n.statusLocked())
}

// statusLocked is STATUS=, with mu held.
func (n *notifier) statusLocked() string {
	parts := []string{}
	if n.running == "" {
		parts = append(parts, "starting")
	} else {
		parts = append(parts, n.running)
	}
	if n.exporter != "" {
		parts = append(parts, n.exporter)
	}
	return "STATUS=" + strings.Join(parts, "; ")
}

// ping is part of the agent's Alive hook: the agent calls it only once
// the event loop and the actors answered a liveness tick, so a stuck one
// stops the pings, and systemd restarts linkbeat.
func (n *notifier) ping() {
	if n.watchdog != 0 {
		n.send(sddaemon.SdNotifyWatchdog)
	}
}

// stopping tells systemd the shutdown has begun (the quit-time scripts
// may still run).
func (n *notifier) stopping() {
	n.send(sddaemon.SdNotifyStopping + "\nSTATUS=stopping")
}

// reloading and reloaded bracket a SIGHUP reload, so that systemd shows
// the service reloading meanwhile (sd_notify(3)).
func (n *notifier) reloading() {
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotime.Now().Microseconds()))
}

func (n *notifier) reloaded() { n.send(sddaemon.SdNotifyReady) }

func (n *notifier) send(state string) {
	if !n.on {
		return
	}
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		first, _, _ := strings.Cut(state, "\n")
		n.log.Warn("cannot notify systemd", "state", first, "err", err)
	}
}
