package routes

import "runtime/debug"

// A withdrawal or restore of a whole table briefly holds it twice: the
// record of what was withdrawn (the routes as they were) beside the cache
// of what the kernel has now, plus the change's own working lists. With
// Go's default collector target (GOGC=100) the heap then grows to twice
// that before a collection, which is what the daemon's peak RSS was made
// of: 232 MB for 150,000 routes where 40 MB + 1 KB a route is the goal
// (docs/bench.md). So while such a change runs, and only then, the
// collector runs at a quarter of the live heap's growth instead of all of
// it: a few more collections during one large change (its time is
// measured in the route-scale benchmark), nothing on a small one.
const (
	// bigChange is how many routes and nexthop objects a change must
	// concern for tightGC to apply.
	bigChange = 10_000
	// tightGCPercent is the collector's target during a big change.
	tightGCPercent = 25
)

// tightGC lowers the collector's target for a change of n routes, and
// returns what puts the previous target back. A target already lower (or
// the collector off, GOGC=off) is left alone. m.mu must be held, so that
// two changes never interleave their settings.
func tightGC(n int) func() {
	if n < bigChange {
		return func() {}
	}
	old := debug.SetGCPercent(tightGCPercent)
	if old < tightGCPercent {
		debug.SetGCPercent(old)
		return func() {}
	}
	return func() { debug.SetGCPercent(old) }
}
