package normalize

import (
	"net/netip"
	"time"
)

// Mode says whether a policy changes packets or only reports what it would change.
type Mode uint8

const (
	Enforce Mode = iota
	LogOnly
)

// Direction is who opened the connection, seen from tcpnorm's side.
// Outbound: the local host sent the SYN to the peer. Inbound: the peer sent it.
type Direction uint8

const (
	Outbound Direction = 1 << iota
	Inbound
	Both = Outbound | Inbound
)

// WindowScaleAction is the policy for the window-scale option (RFC 7323 section 2).
type WindowScaleAction uint8

const (
	WSKeep WindowScaleAction = iota
	WSStrip
	WSClamp // lower shifts above Policy.WindowScaleMax; later local windows rewritten
)

// TimestampsAction is the policy for the timestamps option (RFC 7323 section 3).
type TimestampsAction uint8

const (
	TSKeep TimestampsAction = iota
	TSStrip
	TSRepair // rewrite the remote's later TSvals that go backwards or leap ahead
)

// Policy is one compiled peer policy. It is immutable once built: the handshake
// table keeps pointers to it for the life of a connection, across reloads.
type Policy struct {
	Name      string // policy file base name, e.g. "example.net"
	Domain    string
	Ticket    string
	Reason    string
	Mode      Mode
	Direction Direction
	Ports     []uint16 // server port (remote port outbound, local port inbound); empty: all
	Expires   time.Time

	WindowScale    WindowScaleAction
	WindowScaleMax uint8 // with WSClamp, 0..14
	Timestamps     TimestampsAction
	StripSACKOK    bool
	MSSMax         uint16 // 0: leave MSS alone
	StripUnknown   bool
	DropMalformed  bool
	ClearECN       bool
}

// MatchPort reports whether the policy covers connections to server port p.
func (p *Policy) MatchPort(port uint16) bool {
	if len(p.Ports) == 0 {
		return true
	}
	for _, q := range p.Ports {
		if q == port {
			return true
		}
	}
	return false
}

// Table is the policy table normalize reads: implemented by config's compiled,
// immutable longest-prefix-match table, and by MapTable in tests.
type Table interface {
	// Lookup returns the policy for a connection whose remote peer is at addr,
	// whose server port is port, opened in direction dir, or nil. IPv4 peers are
	// passed as 4-byte addresses (never 4-in-6). It must not allocate.
	Lookup(addr netip.Addr, port uint16, dir Direction) *Policy
}
