package pathmon

import "fmt"

// Verdict is what the monitor concluded about one slave's path.
type Verdict uint8

const (
	// Unknown: probing, no verdict yet (no reply so far, and fewer than
	// missed_max intervals probed).
	Unknown Verdict = iota
	// Alive: a target answered in the last missed_max intervals.
	Alive
	// Dead: missed_max intervals in a row without a reply.
	Dead
)

func (v Verdict) String() string {
	switch v {
	case Unknown:
		return "unknown"
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// MarshalText makes a Verdict its name in JSON.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// State is one slave's verdict state, advanced once per interval by step.
type State struct {
	Verdict Verdict `json:"verdict"`
	// Missed counts the intervals in a row without a reply.
	Missed int `json:"missed"`
	// Replies is the slave's reply counter (all targets) at the last step.
	Replies uint64 `json:"replies"`
}

// step folds one interval into s. replies is the slave's reply counter
// now, summed over its targets. A rise means a target answered during the
// interval: the path is alive at once. No rise is a missed interval, and
// missedMax of them in a row make it dead. changed says the verdict is new
// (the first verdict, from Unknown, counts as new).
//
// A counter below the last one was reset (its map entry recreated): what
// it holds now is new.
func step(s State, replies uint64, missedMax int) (next State, changed bool) {
	missedMax = max(missedMax, 1)
	answered := replies > s.Replies || (replies < s.Replies && replies > 0)
	next = State{Verdict: s.Verdict, Missed: s.Missed, Replies: replies}
	if answered {
		next.Missed = 0
		next.Verdict = Alive
	} else {
		// Saturate: a long-dead path must not overflow.
		next.Missed = min(s.Missed+1, missedMax)
		if next.Missed >= missedMax {
			next.Verdict = Dead
		}
	}
	return next, next.Verdict != s.Verdict
}
