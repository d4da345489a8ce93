package normalize

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// TCP option kinds (IANA "TCP Option Kind Numbers").
const (
	OptEOL    = 0
	OptNOP    = 1
	OptMSS    = 2  // RFC 9293, length 4
	OptWS     = 3  // RFC 7323, length 3
	OptSACKOK = 4  // RFC 2018, length 2
	OptSACK   = 5  // RFC 2018
	OptTS     = 8  // RFC 7323, length 10
	OptMD5    = 19 // RFC 2385: authenticates the header
	OptAO     = 29 // RFC 5925: authenticates the header
	OptMPTCP  = 30 // RFC 8684
	OptTFO    = 34 // RFC 7413
)

// MaxWindowShift is the largest window-scale shift (RFC 7323 section 2.3):
// a larger one is treated as 14.
const MaxWindowShift = 14

// exactLen is the required length of options whose length is fixed; 0: any
// length >= 2.
var exactLen = [256]uint8{OptMSS: 4, OptWS: 3, OptSACKOK: 2, OptTS: 10}

// known reports whether kind is one the policy names (not "unknown").
func known(kind uint8) bool {
	switch kind {
	case OptEOL, OptNOP, OptMSS, OptWS, OptSACKOK, OptSACK, OptTS:
		return true
	}
	return false
}

// Option is one option inside an option list: Data is the whole option
// (kind, length and value), a sub-slice of the packet.
type Option struct {
	Kind uint8
	Data []byte
}

// OptionIter walks a TCP option list (RFC 9293 section 3.2). It never
// allocates and always makes progress: every step consumes at least one byte.
// A list that violates the rules stops the walk and marks it malformed:
// a length byte missing, below 2 or past the end, or a wrong length for MSS,
// WS, SACK-permitted or timestamps. EOL ends the list (well formed).
type OptionIter struct {
	b         []byte
	i         int
	opt       Option
	malformed bool
}

// Options returns an iterator over the option list b.
func Options(b []byte) OptionIter { return OptionIter{b: b} }

// Next advances to the next option other than NOP and reports whether there
// is one.
func (it *OptionIter) Next() bool {
	for it.i < len(it.b) {
		kind := it.b[it.i]
		switch kind {
		case OptEOL:
			it.i = len(it.b)
			return false
		case OptNOP:
			it.i++
			continue
		}
		if it.i+1 >= len(it.b) {
			return it.fail()
		}
		n := int(it.b[it.i+1])
		if n < 2 || it.i+n > len(it.b) {
			return it.fail()
		}
		if x := exactLen[kind]; x != 0 && n != int(x) {
			return it.fail()
		}
		it.opt = Option{Kind: kind, Data: it.b[it.i : it.i+n]}
		it.i += n
		return true
	}
	return false
}

func (it *OptionIter) fail() bool {
	it.malformed = true
	it.i = len(it.b)
	return false
}

// Option returns the current option; valid after Next returned true.
func (it *OptionIter) Option() Option { return it.opt }

// Malformed reports whether the walk stopped on a malformed option. Valid once
// Next has returned false.
func (it *OptionIter) Malformed() bool { return it.malformed }

// optionSummary is what one walk of a list finds.
type optionSummary struct {
	ws, ts, sackok, mss []byte // the option, if present (the last one wins)
	unknown             int    // count of unknown kinds
	auth                bool   // MD5 or AO present
	malformed           bool
	// dup: one of the four kinds above appears more than once. Stacks
	// differ on which one counts, so an action applies to every one.
	dup bool
}

func summarize(b []byte, s *optionSummary) {
	it := Options(b)
	for it.Next() {
		switch o := it.opt; o.Kind {
		case OptWS:
			s.dup = s.dup || s.ws != nil
			s.ws = o.Data
		case OptTS:
			s.dup = s.dup || s.ts != nil
			s.ts = o.Data
		case OptSACKOK:
			s.dup = s.dup || s.sackok != nil
			s.sackok = o.Data
		case OptMSS:
			s.dup = s.dup || s.mss != nil
			s.mss = o.Data
		case OptMD5, OptAO:
			s.auth = true
		default:
			if !known(o.Kind) {
				s.unknown++
			}
		}
	}
	s.malformed = it.malformed
}

// nopFill overwrites an option with NOPs.
func nopFill(o []byte) {
	for i := range o {
		o[i] = OptNOP
	}
}

// stripUnknown NOP-fills every option whose kind is unknown (never MD5 or AO:
// a segment with those is not modified at all). The list must be well formed.
func stripUnknown(b []byte) {
	it := Options(b)
	for it.Next() {
		if o := it.Option(); !known(o.Kind) && o.Kind != OptMD5 && o.Kind != OptAO {
			nopFill(o.Data)
		}
	}
}

func optMSS(o []byte) uint16         { return binary.BigEndian.Uint16(o[2:]) }
func setOptMSS(o []byte, v uint16)   { binary.BigEndian.PutUint16(o[2:], v) }
func optTSval(o []byte) uint32       { return binary.BigEndian.Uint32(o[2:]) }
func optTSecr(o []byte) uint32       { return binary.BigEndian.Uint32(o[6:]) }
func setOptTSval(o []byte, v uint32) { binary.BigEndian.PutUint32(o[2:], v) }

// OptionForm is how AppendOption renders an option it does not decode in
// full.
type OptionForm uint8

const (
	// OptionTcpdump names it as tcpdump does: "opt-27", a known kind of
	// the wrong length "mss?", SACK blocks "sack". For people reading
	// packets (tcpnorm report, the lab's segment logs).
	OptionTcpdump OptionForm = iota
	// OptionBytes shows its kind and value in hex, "opt-27:0001", for test
	// diffs that must tell such options apart.
	OptionBytes
)

// optionNames are tcpdump's names of the kinds it decodes.
var optionNames = [256]string{OptEOL: "eol", OptNOP: "nop", OptMSS: "mss", OptWS: "wscale", OptSACKOK: "sackOK", OptSACK: "sack", OptTS: "TS"}

// OptionName is tcpdump's name of an option kind, or "opt-" and its number.
func OptionName(kind uint8) string {
	if n := optionNames[kind]; n != "" {
		return n
	}
	return "opt-" + strconv.Itoa(int(kind))
}

// AppendOption appends an option as tcpdump -n prints it in a list of
// options ("mss 1460", "TS val 1 ecr 0"), from its kind and value (the
// bytes after its length byte). It is the one option printer: for logs,
// reports and tests, never the packet path.
func AppendOption(b []byte, kind uint8, value []byte, form OptionForm) []byte {
	switch {
	case kind == OptEOL || kind == OptNOP:
		return append(b, optionNames[kind]...)
	case kind == OptMSS && len(value) == 2:
		return strconv.AppendUint(append(b, "mss "...), uint64(binary.BigEndian.Uint16(value)), 10)
	case kind == OptWS && len(value) == 1:
		return strconv.AppendUint(append(b, "wscale "...), uint64(value[0]), 10)
	case kind == OptSACKOK && (len(value) == 0 || form == OptionTcpdump):
		return append(b, "sackOK"...)
	case kind == OptTS && len(value) == 8:
		b = strconv.AppendUint(append(b, "TS val "...), uint64(binary.BigEndian.Uint32(value)), 10)
		return strconv.AppendUint(append(b, " ecr "...), uint64(binary.BigEndian.Uint32(value[4:])), 10)
	case form == OptionBytes:
		b = strconv.AppendUint(append(b, "opt-"...), uint64(kind), 10)
		return hex.AppendEncode(append(b, ':'), value)
	case kind == OptMSS || kind == OptWS || kind == OptTS:
		return append(append(b, optionNames[kind]...), '?')
	}
	return append(b, OptionName(kind)...)
}
