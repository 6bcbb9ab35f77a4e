package routes

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"
)

// Op says how AddRoute/AddNexthop write an object.
type Op int

const (
	// OpCreate adds only if nothing with the same key exists (NLM_F_EXCL):
	// EEXIST means someone else already put it back.
	OpCreate Op = iota
	// OpReplace replaces an existing object and fails if there is none.
	// For IPv4 routes the kernel replaces the first route of the key.
	OpReplace
	// OpAppend adds a route after the others of its key (`ip route
	// append`): IPv4 keeps it apart, IPv6 makes a gateway route a sibling
	// of a gateway route already there.
	OpAppend
	// OpPrepend adds an IPv4 route before the others of its key (`ip
	// route prepend`). IPv6 has no such place: it appends.
	OpPrepend
)

// RouteChange is one change of an ApplyRoutes batch: Route deleted, or
// added with Op.
type RouteChange struct {
	Route  *Route
	Delete bool
	Op     Op
}

// applyBatch bounds what the Manager hands ApplyRoutes at once: it sends
// kernel-sized datagrams anyway, and a batch of a whole table held its
// changes (and, in a restore, its keys) at once, at the peak of the heap.
const applyBatch = 1024

// LinkInfo is what the manager needs to know about a link.
type LinkInfo struct {
	Name    string
	Carrier bool
}

// ErrNoLink is returned by Kernel.Link when the ifindex does not exist.
var ErrNoLink = errors.New("no such link")

// UpdateKind tells what a notification says.
type UpdateKind int

const (
	RouteAdded UpdateKind = iota
	RouteDeleted
	NexthopAdded
	NexthopDeleted
	// Overrun: notifications were lost (ENOBUFS); the cache must re-dump.
	Overrun
)

// Update is one route or nexthop notification.
type Update struct {
	Kind UpdateKind
	// Flags are the notice's netlink header flags: NLM_F_REPLACE,
	// NLM_F_APPEND, NLM_F_EXCL or NLM_F_CREATE alone (prepend) say where
	// an added route went among the others of its key.
	Flags   uint16
	Route   *Route
	Nexthop *Nexthop
}

// Kernel is the netlink boundary. Errors keep the kernel errno so that
// errors.Is(err, unix.EEXIST), unix.ESRCH and unix.ENOENT work.
type Kernel interface {
	// Routes dumps IPv4 and IPv6 routes of every table.
	Routes() ([]*Route, error)
	// Nexthops dumps nexthop objects (none if the kernel lacks them).
	Nexthops() ([]*Nexthop, error)
	AddRoute(r *Route, op Op) error
	// DeleteRoute deletes the one kernel route r names: its key and its
	// hops, or its nexthop object. Other routes of the key (IPv4 `ip route
	// append` twins) stay. A nexthop object that no longer exists reads as
	// ESRCH: the kernel flushed the route with it.
	DeleteRoute(r *Route) error
	// ApplyRoutes applies route changes in order, as AddRoute and DeleteRoute
	// would one by one, but in as few system calls as it can: a carrier
	// loss may withdraw tens of thousands. It returns one error per change.
	ApplyRoutes(changes []RouteChange) []error
	AddNexthop(n *Nexthop, op Op) error
	DeleteNexthop(id uint32) error
	// Subscribe delivers route and nexthop notifications until ctx ends;
	// the channel is closed then.
	Subscribe(ctx context.Context) (<-chan Update, error)
	// Link returns the link's name and carrier, or ErrNoLink.
	Link(ifindex int) (LinkInfo, error)
}

func isExist(err error) bool { return errors.Is(err, unix.EEXIST) }

// isGone: the object to delete or replace is not there.
func isGone(err error) bool { return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) }

// isNoCarrier: the kernel refused a nexthop object because its link has
// no carrier (ENETDOWN). A restore racing the next carrier loss gets it;
// it means "wait for carrier", not a failure.
func isNoCarrier(err error) bool { return errors.Is(err, unix.ENETDOWN) }
