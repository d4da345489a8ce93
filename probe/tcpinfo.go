//go:build linux

package probe

import (
	"encoding/binary"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpi_options bits (linux/tcp.h).
const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWscale     = 4
)

// wscaleOffset is where struct tcp_info keeps the bit fields
// tcpi_snd_wscale:4 and tcpi_rcv_wscale:4, right after tcpi_options.
// unix.TCPInfo has no field for them (Go has no bit fields): they sit in
// what it treats as padding before tcpi_rto.
const wscaleOffset = 6

// littleEndian decides the bit-field order: the C compiler allocates
// tcpi_snd_wscale in the low nibble on little-endian machines, in the high
// nibble on big-endian ones.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// tcpInfo is the part of the kernel's struct tcp_info a trial reports.
type tcpInfo struct {
	bytesAcked  uint64 // tcpi_bytes_acked: counts the SYN as one byte
	retrans     uint32 // tcpi_total_retrans
	options     uint8  // tcpi_options
	sndWscale   uint8  // the peer's shift, applied to its windows
	rcvWscale   uint8  // our shift, applied to the windows we send
	sndMSS      uint32
	sndWnd      uint32 // 0 before Linux 5.4
	rtt         time.Duration
	rwndLimited time.Duration
}

// readTCPInfo reads TCP_INFO from the socket behind raw.
func readTCPInfo(raw syscall.RawConn) (tcpInfo, error) {
	var ti *unix.TCPInfo
	var serr error
	err := raw.Control(func(fd uintptr) {
		ti, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return tcpInfo{}, err
	}
	// ti points at the very memory the kernel wrote; a copy of the struct
	// need not keep the padding that holds the shifts.
	ws := (*[unix.SizeofTCPInfo]byte)(unsafe.Pointer(ti))[wscaleOffset]
	snd, rcv := ws&0x0f, ws>>4
	if !littleEndian {
		snd, rcv = rcv, snd
	}
	// Fields a kernel older than x/sys does not write stay zero: the struct
	// is zeroed before getsockopt and the kernel copies only its own length.
	return tcpInfo{
		bytesAcked:  ti.Bytes_acked,
		retrans:     ti.Total_retrans,
		options:     ti.Options,
		sndWscale:   snd,
		rcvWscale:   rcv,
		sndMSS:      ti.Snd_mss,
		sndWnd:      ti.Snd_wnd,
		rtt:         time.Duration(ti.Rtt) * time.Microsecond,
		rwndLimited: time.Duration(ti.Rwnd_limited) * time.Microsecond,
	}, nil
}

// readMark reads SO_MARK back from the socket behind raw.
func readMark(raw syscall.RawConn) (uint32, error) {
	var mark int
	var serr error
	err := raw.Control(func(fd uintptr) {
		mark, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
	})
	if err == nil {
		err = serr
	}
	return uint32(mark), err
}

// fill copies the kernel's view into t.
func (ti tcpInfo) fill(t *Trial) {
	t.BytesAcked = ti.bytesAcked
	t.Retrans = ti.retrans
	t.WindowScaling = ti.options&tcpiOptWscale != 0
	if t.WindowScaling {
		t.SndWscale, t.RcvWscale = ti.sndWscale, ti.rcvWscale
	}
	t.Timestamps = ti.options&tcpiOptTimestamps != 0
	t.SACK = ti.options&tcpiOptSACK != 0
	t.SndMSS = ti.sndMSS
	t.SndWnd = ti.sndWnd
	t.RTT = ti.rtt
	t.RwndLimited = ti.rwndLimited
}
