package evidence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// pcapng block types and option codes used here.
const (
	blockSection     = 0x0A0D0D0A
	blockIface       = 1
	blockEnhanced    = 6
	optEnd           = 0
	optComment       = 1
	optTSResol       = 9 // if_tsresol
	byteOrder        = 0x1A2B3C4D
	byteOrderSwapped = 0x4D3C2B1A // a big-endian section read as little-endian
	epbFixed         = 28         // type, length, interface, timestamp (2), captured, original
	maxBlock         = 1 << 20
)

// writeHeader writes a section header and one raw-IP interface with
// nanosecond timestamps, as pcapgo writes them.
func writeHeader(w io.Writer, policy string) error {
	nw, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{
		Name:                "tcpnorm",
		Description:         "handshake segments of policy " + policy + ", as received and as sent",
		LinkType:            layers.LinkTypeRaw,
		SnapLength:          snapLen,
		TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: "tcpnorm",
		Comment:     "tcpnorm evidence: policy " + policy,
	}})
	if err != nil {
		return err
	}
	return nw.Flush()
}

var zeros [3]byte // block padding

// appendPacket appends an enhanced packet block on interface 0 holding data
// (the first len(data) bytes of a packet of origLen) with a comment.
func appendPacket(b []byte, t time.Time, data []byte, origLen int, comment string) []byte {
	pad := func(n int) int { return (4 - n&3) & 3 }
	total := epbFixed + len(data) + pad(len(data)) + 4
	if comment != "" {
		total += 4 + len(comment) + pad(len(comment)) + 4
	}
	le := binary.LittleEndian
	ts := uint64(t.UnixNano())
	b = le.AppendUint32(b, blockEnhanced)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(data)))
	b = le.AppendUint32(b, uint32(origLen))
	b = append(b, data...)
	b = append(b, zeros[:pad(len(data))]...)
	if comment != "" {
		b = le.AppendUint16(b, optComment)
		b = le.AppendUint16(b, uint16(len(comment)))
		b = append(b, comment...)
		b = append(b, zeros[:pad(len(comment))]...)
		b = le.AppendUint32(b, optEnd) // code and length 0
	}
	return le.AppendUint32(b, uint32(total))
}

// Packet is one packet read back from an evidence file.
type Packet struct {
	Time    time.Time
	Data    []byte // the IP packet, as far as it was kept
	Length  int    // its length on the wire
	Comment string
}

// ReadFile reads every packet of an evidence file (any pcapng file with
// raw-IP interfaces). A file cut short inside its last block (a write the
// disk refused) yields the packets before it.
func ReadFile(path string) ([]Packet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(b)
}

type iface struct {
	link  uint16
	resol uint8
}

func parse(b []byte) ([]Packet, error) {
	var (
		out    []Packet
		order  binary.ByteOrder = binary.LittleEndian
		ifaces []iface
	)
	for off := 0; off+12 <= len(b); {
		typ := binary.LittleEndian.Uint32(b[off:])
		if typ == blockSection {
			switch binary.LittleEndian.Uint32(b[off+8:]) {
			case byteOrder:
				order = binary.LittleEndian
			case byteOrderSwapped:
				order = binary.BigEndian
			default:
				return out, fmt.Errorf("byte offset %d: bad section header byte-order magic", off)
			}
			ifaces = ifaces[:0]
		} else if off == 0 {
			return nil, errors.New("not a pcapng file")
		}
		typ = order.Uint32(b[off:])
		n := int(order.Uint32(b[off+4:]))
		if n < 12 || n%4 != 0 || n > maxBlock {
			return out, fmt.Errorf("byte offset %d: bad block length %d", off, n)
		}
		if off+n > len(b) {
			break // cut short
		}
		body := b[off+8 : off+n-4]
		switch typ {
		case blockIface:
			if len(body) < 8 {
				return out, fmt.Errorf("byte offset %d: short interface block", off)
			}
			ifc := iface{link: order.Uint16(body), resol: 6}
			walkOptions(body[8:], order, func(code uint16, v []byte) {
				if code == optTSResol && len(v) == 1 {
					ifc.resol = v[0]
				}
			})
			ifaces = append(ifaces, ifc)
		case blockEnhanced:
			if len(body) < 20 {
				return out, fmt.Errorf("byte offset %d: short packet block", off)
			}
			id := int(order.Uint32(body))
			capLen := int(order.Uint32(body[12:]))
			if id >= len(ifaces) || capLen > len(body)-20 {
				return out, fmt.Errorf("byte offset %d: bad packet block", off)
			}
			if l := ifaces[id].link; l != uint16(layers.LinkTypeRaw) && l != 228 && l != 229 {
				return out, fmt.Errorf("byte offset %d: link type %d is not raw IP", off, l)
			}
			ts := uint64(order.Uint32(body[4:]))<<32 | uint64(order.Uint32(body[8:]))
			p := Packet{
				Time:   stamp(ts, ifaces[id].resol),
				Data:   body[20 : 20+capLen],
				Length: int(order.Uint32(body[16:])),
			}
			walkOptions(body[20+capLen+(4-capLen&3)&3:], order, func(code uint16, v []byte) {
				if code == optComment {
					p.Comment = string(v)
				}
			})
			out = append(out, p)
		}
		off += n
	}
	return out, nil
}

// walkOptions calls f for each option until opt_endofopt or the end.
func walkOptions(b []byte, order binary.ByteOrder, f func(code uint16, v []byte)) {
	for len(b) >= 4 {
		code, n := order.Uint16(b), int(order.Uint16(b[2:]))
		if code == optEnd || 4+n > len(b) {
			return
		}
		f(code, bytes.Clone(b[4:4+n]))
		b = b[min(len(b), 4+n+(4-n&3)&3):]
	}
}

// stamp converts a pcapng timestamp in units of if_tsresol: a negative
// power of 10, or of 2 with the top bit set.
func stamp(ts uint64, resol uint8) time.Time {
	var per uint64 = 1
	if resol&0x80 != 0 {
		per <<= min(resol&0x7f, 63)
	} else {
		for i := uint8(0); i < min(resol, 19); i++ {
			per *= 10
		}
	}
	sec, frac := ts/per, ts%per
	return time.Unix(int64(sec), int64(float64(frac)/float64(per)*1e9))
}
