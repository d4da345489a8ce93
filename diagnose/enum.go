package diagnose

import "fmt"

// The names below are the report's values in JSON and text: each type
// marshals as its name, so the JSON output and the words of the text report
// are defined once. A Direction the handshake did not show is "".
var (
	verdictNames    = [...]string{VerdictHealthy: "healthy", VerdictOptionFault: "option-fault", VerdictNoOptionFault: "no-option-fault", VerdictSuspected: "suspected"}
	confidenceNames = [...]string{High: "high", Medium: "medium", Low: "low", Suspected: "suspected"}
	vantageNames    = [...]string{VantageSender: "sender", VantageReceiver: "receiver", VantageClient: "client", VantageServer: "server"}
	directionNames  = [...]string{DirectionUnknown: "", Outbound: "outbound", Inbound: "inbound"}
)

func enumString[E ~uint8](names []string, v E, kind string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", kind, v)
}

func enumMarshal[E ~uint8](names []string, v E, kind string) ([]byte, error) {
	if int(v) < len(names) {
		return []byte(names[v]), nil
	}
	return nil, fmt.Errorf("invalid %s %d", kind, v)
}

func enumUnmarshal[E ~uint8](names []string, text []byte, kind string, v *E) error {
	for i, n := range names {
		if n == string(text) {
			*v = E(i)
			return nil
		}
	}
	return fmt.Errorf("invalid %s %q", kind, text)
}

func (v Verdict) String() string { return enumString(verdictNames[:], v, "verdict") }
func (v Verdict) MarshalText() ([]byte, error) {
	return enumMarshal(verdictNames[:], v, "verdict")
}
func (v *Verdict) UnmarshalText(b []byte) error {
	return enumUnmarshal(verdictNames[:], b, "verdict", v)
}

func (c Confidence) String() string { return enumString(confidenceNames[:], c, "confidence") }
func (c Confidence) MarshalText() ([]byte, error) {
	return enumMarshal(confidenceNames[:], c, "confidence")
}
func (c *Confidence) UnmarshalText(b []byte) error {
	return enumUnmarshal(confidenceNames[:], b, "confidence", c)
}

func (v Vantage) String() string { return enumString(vantageNames[:], v, "vantage") }
func (v Vantage) MarshalText() ([]byte, error) {
	return enumMarshal(vantageNames[:], v, "vantage")
}
func (v *Vantage) UnmarshalText(b []byte) error {
	return enumUnmarshal(vantageNames[:], b, "vantage", v)
}

func (d Direction) String() string { return enumString(directionNames[:], d, "direction") }
func (d Direction) MarshalText() ([]byte, error) {
	return enumMarshal(directionNames[:], d, "direction")
}
func (d *Direction) UnmarshalText(b []byte) error {
	return enumUnmarshal(directionNames[:], b, "direction", d)
}

// String is the policy file's value: "strip", or "keep".
func (s Strip) String() string {
	if s {
		return "strip"
	}
	return "keep"
}

func (s Strip) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Strip) UnmarshalText(b []byte) error {
	switch string(b) {
	case "strip":
		*s = true
	case "keep":
		*s = false
	default:
		return fmt.Errorf("invalid strip %q", b)
	}
	return nil
}
