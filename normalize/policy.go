package normalize

import (
	"fmt"
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

// The names below are the policy file's values (config parses and prints
// them with these methods, so the file syntax is defined once).
var (
	modeNames      = [...]string{Enforce: "enforce", LogOnly: "log-only"}
	directionNames = [...]string{Outbound: "outbound", Inbound: "inbound", Both: "both"}
	wsNames        = [...]string{WSKeep: "keep", WSStrip: "strip", WSClamp: "clamp"}
	tsNames        = [...]string{TSKeep: "keep", TSStrip: "strip", TSRepair: "repair"}
)

func enumString(names []string, v uint8, kind string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", kind, v)
}

func enumMarshal(names []string, v uint8, kind string) ([]byte, error) {
	if int(v) < len(names) && names[v] != "" {
		return []byte(names[v]), nil
	}
	return nil, fmt.Errorf("invalid %s %d", kind, v)
}

func enumUnmarshal(names []string, text []byte, kind string) (uint8, error) {
	for i, n := range names {
		if n != "" && n == string(text) {
			return uint8(i), nil
		}
	}
	var valid []string
	for _, n := range names {
		if n != "" {
			valid = append(valid, n)
		}
	}
	return 0, &EnumError{Kind: kind, Value: string(text), Valid: valid}
}

// EnumError is the UnmarshalText error of a name that is none of the
// type's: config reports it at the key with the names allowed.
type EnumError struct {
	Kind  string // mode, direction, window_scale, timestamps
	Value string
	Valid []string // the type's names, in order
}

func (e *EnumError) Error() string {
	return fmt.Sprintf("invalid %s %q (want one of %v)", e.Kind, e.Value, e.Valid)
}

func (m Mode) String() string               { return enumString(modeNames[:], uint8(m), "mode") }
func (m Mode) MarshalText() ([]byte, error) { return enumMarshal(modeNames[:], uint8(m), "mode") }
func (d Direction) String() string          { return enumString(directionNames[:], uint8(d), "direction") }
func (d Direction) MarshalText() ([]byte, error) {
	return enumMarshal(directionNames[:], uint8(d), "direction")
}
func (a WindowScaleAction) String() string { return enumString(wsNames[:], uint8(a), "window_scale") }
func (a WindowScaleAction) MarshalText() ([]byte, error) {
	return enumMarshal(wsNames[:], uint8(a), "window_scale")
}
func (a TimestampsAction) String() string { return enumString(tsNames[:], uint8(a), "timestamps") }
func (a TimestampsAction) MarshalText() ([]byte, error) {
	return enumMarshal(tsNames[:], uint8(a), "timestamps")
}

func (m *Mode) UnmarshalText(b []byte) error {
	v, err := enumUnmarshal(modeNames[:], b, "mode")
	*m = Mode(v)
	return err
}

func (d *Direction) UnmarshalText(b []byte) error {
	v, err := enumUnmarshal(directionNames[:], b, "direction")
	*d = Direction(v)
	return err
}

func (a *WindowScaleAction) UnmarshalText(b []byte) error {
	v, err := enumUnmarshal(wsNames[:], b, "window_scale")
	*a = WindowScaleAction(v)
	return err
}

func (a *TimestampsAction) UnmarshalText(b []byte) error {
	v, err := enumUnmarshal(tsNames[:], b, "timestamps")
	*a = TimestampsAction(v)
	return err
}

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

	// Evidence: keep each handshake segment as received and as sent
	// (Result.Original holds the received bytes of a rewritten one).
	Evidence bool
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
