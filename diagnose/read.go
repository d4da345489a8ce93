package diagnose

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/klauspost/compress/zstd"
)

// zstdMaxWindow is the largest zstd window accepted, the zstd command's
// own default limit for decompression (--memory=128MB): a frame asking
// for more is refused rather than allowed to take the memory.
const zstdMaxWindow = 128 << 20

// maxSnap is the largest record accepted (tcpdump's MAXIMUM_SNAPLEN): a
// record header claiming more is corrupt.
const maxSnap = 262144

// Link types not named in gopacket's enum.
const (
	linkEthernet  = 1
	linkNull      = 0
	linkLoop      = 108
	linkRaw       = 101
	linkLinuxSLL  = 113
	linkLinuxSLL2 = 276
	linkIPv4      = 228
	linkIPv6      = 229
	linkRawBSD    = 12 // DLT_RAW on some BSDs
	linkRawBSD14  = 14
	// gopacket's LinkType is a uint8, so pcapgo's pcapng reader hands
	// SLL2 (276) over as 20, a value the link-type registry leaves unused.
	linkSLL2Truncated = linkLinuxSLL2 & 0xff
)

// CorruptError is a capture file that cannot be read past Offset.
type CorruptError struct {
	Offset int64  // byte offset of the record that could not be read
	Packet uint64 // number of the last packet read before it (0: none)
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("corrupt capture at byte offset %d (after packet %d): %v", e.Offset, e.Packet, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// countingReader counts the bytes read from r. Under a bufio.Reader the
// bytes consumed so far are n minus what the buffer still holds.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// packetSource is the part of pcapgo's readers the analyser uses.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// capture reads records from a pcap or pcapng stream and tracks the byte
// offset of each record.
type capture struct {
	cr     *countingReader
	br     *bufio.Reader
	src    packetSource
	ng     bool
	link   uint32 // pcap: the file's; pcapng: per packet
	format string
	// truncatedTail is set when the stream ended inside a record.
	truncatedTail bool
}

// openCapture detects the format by its magic number and reads the file
// header. The bufio.Reader handed to pcapgo is used as is (it is already
// large enough), so its Buffered count gives exact offsets.
//
// A capture compressed with gzip or zstd (tcpdump -w - | gzip, a rotated
// .pcap.gz, .pcapng.zst) is read through the decompressor, as tshark
// does; offsets are then those of the decompressed stream.
func openCapture(r io.Reader) (*capture, error) {
	c, err := openRaw(r)
	var ce *compressedError
	if !errors.As(err, &ce) {
		return c, err
	}
	zr, err := ce.open()
	if err != nil {
		return nil, &CorruptError{Offset: 0, Err: fmt.Errorf("%s: %w", ce.format, err)}
	}
	c, err = openRaw(zr)
	if errors.As(err, &ce) {
		return nil, &CorruptError{Offset: 0, Err: fmt.Errorf("%s inside %s: not a capture", ce.format, ce.outer)}
	}
	if err != nil {
		return nil, fmt.Errorf("%s-compressed: %w", ce.outer, err)
	}
	c.format += "." + ce.ext
	return c, nil
}

// compressedError is openRaw's answer for a compressed stream: open
// returns the decompressed one.
type compressedError struct {
	format, outer, ext string
	open               func() (io.Reader, error)
}

func (e *compressedError) Error() string { return e.format + "-compressed stream" }

// openRaw is openCapture without decompression.
func openRaw(r io.Reader) (*capture, error) {
	c := &capture{cr: &countingReader{r: r}}
	c.br = bufio.NewReaderSize(c.cr, 1<<16)
	magic, err := c.br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &CorruptError{Offset: int64(len(magic)), Err: errors.New("file too short for a capture header (empty file?)")}
		}
		return nil, err
	}
	switch binary.LittleEndian.Uint32(magic) {
	case 0x0a0d0d0a: // pcapng section header block
		c.ng, c.format = true, "pcapng"
		ng, err := pcapgo.NewNgReader(c.br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, &CorruptError{Offset: 0, Err: fmt.Errorf("pcapng header: %w", err)}
		}
		c.src = ng
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		c.format = "pcap"
		hdr, err := c.br.Peek(24)
		if err != nil {
			return nil, &CorruptError{Offset: int64(len(hdr)), Err: errors.New("file too short for a pcap header")}
		}
		if binary.LittleEndian.Uint32(hdr) == 0xa1b2c3d4 || binary.LittleEndian.Uint32(hdr) == 0xa1b23c4d {
			c.link = binary.LittleEndian.Uint32(hdr[20:]) & 0x0fffffff
		} else {
			c.link = binary.BigEndian.Uint32(hdr[20:]) & 0x0fffffff
		}
		pr, err := pcapgo.NewReader(c.br)
		if err != nil {
			return nil, &CorruptError{Offset: 0, Err: fmt.Errorf("pcap header: %w", err)}
		}
		// Some writers exceed the snap length they declare; tcpdump
		// reads such files, so accept records up to maxSnap.
		pr.SetSnaplen(maxSnap)
		c.src = pr
	default:
		switch {
		case magic[0] == 0x1f && magic[1] == 0x8b:
			return nil, &compressedError{format: "gzip", outer: "gzip", ext: "gz", open: func() (io.Reader, error) {
				return gzip.NewReader(c.br)
			}}
		case binary.LittleEndian.Uint32(magic) == 0xfd2fb528:
			return nil, &compressedError{format: "zstd", outer: "zstd", ext: "zst", open: func() (io.Reader, error) {
				zr, err := zstd.NewReader(c.br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
				if err != nil {
					return nil, err
				}
				return zr.IOReadCloser(), nil
			}}
		}
		return nil, &CorruptError{Offset: 0, Err: fmt.Errorf("not a pcap or pcapng file (magic %02x)", magic)}
	}
	return c, nil
}

// offset is the number of bytes consumed so far.
func (c *capture) offset() int64 { return c.cr.n - int64(c.br.Buffered()) }

// next returns the next record and its link type. io.EOF ends a clean file;
// a stream that ends inside a record also returns io.EOF and sets
// truncatedTail. Any other failure is a *CorruptError.
func (c *capture) next(pktNum uint64) ([]byte, gopacket.CaptureInfo, uint32, error) {
	start := c.offset()
	data, ci, err := c.src.ZeroCopyReadPacketData()
	if err != nil {
		if err == io.EOF && c.offset() == start {
			return nil, ci, 0, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			c.truncatedTail = true
			return nil, ci, 0, &CorruptError{Offset: start, Packet: pktNum, Err: io.ErrUnexpectedEOF}
		}
		return nil, ci, 0, &CorruptError{Offset: start, Packet: pktNum, Err: err}
	}
	if ci.CaptureLength > maxSnap || ci.CaptureLength < 0 {
		return nil, ci, 0, &CorruptError{Offset: start, Packet: pktNum, Err: fmt.Errorf("record length %d exceeds %d", ci.CaptureLength, maxSnap)}
	}
	link := c.link
	if c.ng && len(ci.AncillaryData) > 0 {
		if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
			link = uint32(lt)
			if link == linkSLL2Truncated {
				link = linkLinuxSLL2
			}
		}
	}
	return data, ci, link, nil
}

// linkPayload strips the link-layer header and returns the IP packet, or nil
// for frames that carry no IPv4 or IPv6 packet. hdr is the header length.
func linkPayload(link uint32, b []byte) (ip []byte, hdr int) {
	var etype uint16
	switch link {
	case linkEthernet:
		if len(b) < 14 {
			return nil, 0
		}
		etype, hdr = binary.BigEndian.Uint16(b[12:]), 14
		// 802.1Q and 802.1ad tags, stacked at most a few deep.
		for i := 0; i < 4 && (etype == 0x8100 || etype == 0x88a8 || etype == 0x9100); i++ {
			if len(b) < hdr+4 {
				return nil, 0
			}
			etype = binary.BigEndian.Uint16(b[hdr+2:])
			hdr += 4
		}
	case linkLinuxSLL:
		if len(b) < 16 {
			return nil, 0
		}
		etype, hdr = binary.BigEndian.Uint16(b[14:]), 16
	case linkLinuxSLL2:
		if len(b) < 20 {
			return nil, 0
		}
		etype, hdr = binary.BigEndian.Uint16(b[0:]), 20
	case linkRaw, linkIPv4, linkIPv6, linkRawBSD, linkRawBSD14:
		return b, 0
	case linkNull, linkLoop:
		if len(b) < 4 {
			return nil, 0
		}
		// The address family in host (Null) or network (Loop) byte order.
		fam := binary.LittleEndian.Uint32(b)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(b)
		}
		switch fam {
		case 2, 24, 28, 30:
			return b[4:], 4
		}
		return nil, 0
	default:
		return nil, 0
	}
	if etype != 0x0800 && etype != 0x86dd {
		return nil, 0
	}
	return b[hdr:], hdr
}
