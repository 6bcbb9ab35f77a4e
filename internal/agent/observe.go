package agent

import (
	"time"

	"github.com/linkbeat/linkbeat/internal/actions"
	"github.com/linkbeat/linkbeat/internal/bond"
	"github.com/linkbeat/linkbeat/internal/metrics"
	"github.com/linkbeat/linkbeat/internal/script"
	"github.com/linkbeat/linkbeat/internal/source"
)

// observers is what each actor reports to, for metrics and status: one
// observer per actor, all wired here. Each is called on its actor's
// goroutine and must not block.
type observers struct {
	source  source.Observer             // the event loop: carrier, links, resyncs, drops
	actions actions.Observer            // route changes and reaction times
	bonds   bond.Observer               // failovers and switches left to the bond
	scripts func(script.Result)         // each script run
	fast    func(bond.Failover)         // the fast path's failovers
	reload  func(ok bool, at time.Time) // each config reload
}

func newObservers(m *metrics.Metrics) observers {
	return observers{source: m, actions: m, bonds: m, scripts: m.ScriptResult, fast: m.FastFailover, reload: m.ConfigReload}
}
