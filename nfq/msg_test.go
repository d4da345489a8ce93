//go:build linux

package nfq

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// The fixtures are netlink messages as a little-endian host sends and
// receives them: netlink headers little endian, nfnetlink_queue fields big
// endian. Each line is one header or attribute.

func littleEndian(t testing.TB) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("skipping: the hex fixtures are for a little-endian host")
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var clean []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		clean = append(clean, strings.Fields(line)...)
	}
	b, err := hex.DecodeString(strings.Join(clean, ""))
	if err != nil {
		t.Fatalf("bad fixture: %v", err)
	}
	return b
}

// A packet message as the kernel sends it for a queued SYN fragment of 6
// bytes: packet header (id 0x01020304, IPv4, hook 1), in-interface, mark,
// skb info (checksum not ready), payload.
const fixturePacket = `
	58000000 0003 0000 00000000 00000000   # nlmsghdr: len 88, NFQNL_MSG_PACKET, seq 0, pid 0
	02 00 0007                             # nfgenmsg: AF_INET, v0, queue 7
	0b00 0100 01020304 0800 01 00          # NFQA_PACKET_HDR: id, hw_protocol 0x0800, hook 1, pad
	0800 0500 00000002                     # NFQA_IFINDEX_INDEV: 2 (ignored)
	0800 0300 ff000042                     # NFQA_MARK: 0xff000042
	1400 0400 0000000000000001 0000000000000002 # NFQA_TIMESTAMP (ignored)
	0800 0e00 00000001                     # NFQA_SKB_INFO: NFQA_SKB_CSUMNOTREADY
	0a00 0a00 450000140000 0000            # NFQA_PAYLOAD: 6 bytes, padded
`

func TestNextMsg(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name  string
		in    string
		kinds []msgKind
		want  queued // the last message's
	}{
		{
			name:  "packet",
			in:    fixturePacket,
			kinds: []msgKind{msgPacket},
			want:  queued{id: 0x01020304, mark: 0xff000042, skbInfo: 1, payload: []byte{0x45, 0, 0, 0x14, 0, 0}},
		},
		{
			name: "copy shorter than the packet",
			in: `
				30000000 0003 0000 00000000 00000000
				00 00 0007
				0b00 0100 00000009 86dd 03 00  # id 9, IPv6, hook 3
				0800 0d00 000005dc             # NFQA_CAP_LEN: 1500
				0500 0a00 60 000000            # NFQA_PAYLOAD: 1 byte
			`,
			kinds: []msgKind{msgPacket},
			want:  queued{id: 9, truncated: true, payload: []byte{0x60}},
		},
		{
			name: "attribute flags are not part of the type",
			in: `
				20000000 0003 0000 00000000 00000000
				00 00 0007
				0b00 0140 00000005 0800 01 00  # NFQA_PACKET_HDR | NLA_F_NET_BYTEORDER
			`,
			kinds: []msgKind{msgPacket},
			want:  queued{id: 5},
		},
		{
			name: "two messages in one datagram",
			in: `
				20000000 0003 0000 00000000 00000000
				00 00 0007
				0b00 0100 00000005 0800 01 00
				20000000 0003 0000 00000000 00000000
				00 00 0007
				0b00 0100 00000006 0800 01 00
			`,
			kinds: []msgKind{msgPacket, msgPacket},
			want:  queued{id: 6},
		},
		{
			name: "cut by the receive buffer: id kept, payload partial",
			in: `
				00010000 0003 0000 00000000 00000000   # len 256, 40 received
				00 00 0007
				0b00 0100 0000000a 0800 01 00
				e400 0a00 45000014                     # payload of 224 bytes, 4 received
			`,
			kinds: []msgKind{msgPacket},
			want:  queued{id: 10, cut: true, payload: []byte{0x45, 0, 0, 0x14}},
		},
		{
			name: "cut before the packet header",
			in: `
				00010000 0003 0000 00000000 00000000
				00 00 0007
				0b00 0100 0000
			`,
			kinds: []msgKind{msgMalformed},
			want:  queued{cut: true},
		},
		{
			name: "no packet header",
			in: `
				1c000000 0003 0000 00000000 00000000
				00 00 0007
				0800 0300 00000001
			`,
			kinds: []msgKind{msgMalformed},
			want:  queued{mark: 1},
		},
		{
			name: "packet header too short",
			in: `
				1c000000 0003 0000 00000000 00000000
				00 00 0007
				0800 0100 00000005
			`,
			kinds: []msgKind{msgMalformed},
		},
		{
			name: "attribute longer than its message",
			in: `
				20000000 0003 0000 00000000 00000000
				00 00 0007
				0b00 0100 00000005 0800 01 00
				20000000 0003 0000 00000000 00000000
				00 00 0007
				1000 0100 00000006 0800 01 00
			`,
			kinds: []msgKind{msgPacket, msgMalformed},
		},
		{
			name: "attribute length below its header",
			in: `
				18000000 0003 0000 00000000 00000000
				00 00 0007
				0200 0100
			`,
			kinds: []msgKind{msgMalformed},
		},
		{
			name: "no nfgenmsg",
			in: `
				12000000 0003 0000 00000000 00000000
				00 00 0000
			`,
			kinds: []msgKind{msgMalformed},
		},
		{
			name: "refused verdict",
			in: `
				24000000 0200 0001 00000000 a00f0000   # NLMSG_ERROR
				feffffff                               # -ENOENT
				20000000 0103 0100 00000000 00000000   # the verdict it refuses
			`,
			kinds: []msgKind{msgError},
			want:  queued{errno: unix.ENOENT},
		},
		{
			name: "acknowledgement",
			in: `
				24000000 0200 0001 01000000 a00f0000   # NLMSG_ERROR, seq 1
				00000000                               # no error
				20000000 0203 0500 01000000 00000000   # the request: NFQNL_MSG_CONFIG, seq 1
			`,
			kinds: []msgKind{msgAck},
			want:  queued{seq: 1},
		},
		{
			name:  "error without its code",
			in:    `12000000 0200 0000 00000000 00000000 0000`,
			kinds: []msgKind{msgMalformed},
		},
		{
			name: "done, then a packet",
			in: `
				14000000 0300 0200 00000000 00000000 00000000   # NLMSG_DONE
				20000000 0003 0000 00000000 00000000
				00 00 0007
				0b00 0100 00000005 0800 01 00
			`,
			kinds: []msgKind{msgIgnored, msgPacket},
			want:  queued{id: 5},
		},
		{
			name:  "shorter than a header",
			in:    `10000000 0003`,
			kinds: []msgKind{msgMalformed},
		},
		{
			name:  "length below the header",
			in:    `08000000 0003 0000 00000000 00000000`,
			kinds: []msgKind{msgMalformed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := unhex(t, tt.in)
			var kinds []msgKind
			var q queued
			for len(b) > 0 && len(kinds) < 10 {
				var k msgKind
				k, b = nextMsg(b, &q)
				kinds = append(kinds, k)
			}
			if diff := cmp.Diff(tt.kinds, kinds); diff != "" {
				t.Errorf("kinds (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, q, cmp.AllowUnexported(queued{})); diff != "" {
				t.Errorf("last message (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNextMsgNoAllocs(t *testing.T) {
	littleEndian(t)
	b := unhex(t, fixturePacket)
	var q queued
	if n := testing.AllocsPerRun(100, func() { nextMsg(b, &q) }); n != 0 {
		t.Errorf("nextMsg allocates %v times, want 0", n)
	}
}

func TestAppendVerdictMsg(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name  string
		batch bool
		id    uint32
		act   action
		pkt   []byte
		want  string
	}{
		{
			name: "accept",
			id:   7,
			act:  action{verdict: nfqueue.NfAccept},
			want: `
				20000000 0103 0100 00000000 00000000   # len 32, NFQNL_MSG_VERDICT, NLM_F_REQUEST
				00 00 0003                             # nfgenmsg: AF_UNSPEC, v0, queue 3
				0c00 0200 00000001 00000007            # NFQA_VERDICT_HDR: NF_ACCEPT, id 7
			`,
		},
		{
			name:  "batch accept",
			batch: true,
			id:    0x01020304,
			act:   action{verdict: nfqueue.NfAccept},
			want: `
				20000000 0303 0100 00000000 00000000   # NFQNL_MSG_VERDICT_BATCH
				00 00 0003
				0c00 0200 00000001 01020304
			`,
		},
		{
			name: "drop",
			id:   8,
			act:  action{verdict: nfqueue.NfDrop},
			want: `
				20000000 0103 0100 00000000 00000000
				00 00 0003
				0c00 0200 00000000 00000008            # NF_DROP
			`,
		},
		{
			name: "mark only",
			id:   9,
			act:  action{verdict: nfqueue.NfAccept, setMark: true, mark: 0x25000000},
			want: `
				28000000 0103 0100 00000000 00000000
				00 00 0003
				0c00 0200 00000001 00000009
				0800 0300 25000000                     # NFQA_MARK
			`,
		},
		{
			name: "new bytes and mark, padded",
			id:   10,
			act:  action{verdict: nfqueue.NfAccept, packet: true, setMark: true, mark: 0x42},
			pkt:  []byte{1, 2, 3, 4, 5},
			want: `
				34000000 0103 0100 00000000 00000000   # len 52
				00 00 0003
				0c00 0200 00000001 0000000a
				0800 0300 00000042
				0900 0a00 0102030405 000000            # NFQA_PAYLOAD: 5 bytes, padded
			`,
		},
		{
			name: "bytes not sent unless asked",
			id:   11,
			act:  action{verdict: nfqueue.NfAccept},
			pkt:  []byte{1, 2, 3, 4, 5},
			want: `
				20000000 0103 0100 00000000 00000000
				00 00 0003
				0c00 0200 00000001 0000000b
			`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0xaa, 0xbb, 0xcc, 0xdd}
			got := appendVerdictMsg(bytes.Clone(prefix), 3, tt.batch, tt.id, tt.act, tt.pkt)
			want := append(prefix, unhex(t, tt.want)...)
			if diff := cmp.Diff(hex.EncodeToString(want), hex.EncodeToString(got)); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			if n := verdictMsgLen(tt.act, tt.pkt); n != len(got)-len(prefix) {
				t.Errorf("verdictMsgLen = %d, message is %d bytes", n, len(got)-len(prefix))
			}
		})
	}
}

// verdictLines describes one verdict message: "V 3 accept" (NFQNL_MSG_VERDICT,
// id 3), "B 5 accept" (batch up to 5), with " mark=x" and " bytes=n".
func verdictLines(t testing.TB, b []byte) []string {
	t.Helper()
	var lines []string
	for len(b) > 0 {
		if len(b) < verdictFixedLen {
			t.Fatalf("short verdict message: %x", b)
		}
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < verdictFixedLen || n > len(b) || n%4 != 0 {
			t.Fatalf("bad verdict message length %d of %d", n, len(b))
		}
		kind := map[uint16]string{msgTypeVerdict: "V", msgTypeVerdictBatch: "B"}[binary.NativeEndian.Uint16(b[4:6])]
		if kind == "" || binary.BigEndian.Uint16(b[18:20]) != 3 {
			t.Fatalf("not a verdict for queue 3: %x", b[:n])
		}
		verdict := map[uint32]string{nfqueue.NfAccept: "accept", nfqueue.NfDrop: "drop"}[binary.BigEndian.Uint32(b[24:28])]
		line := fmt.Sprintf("%s %d %s", kind, binary.BigEndian.Uint32(b[28:32]), verdict)
		for a := b[verdictFixedLen:n]; len(a) >= 4; {
			l := int(binary.NativeEndian.Uint16(a[0:2]))
			switch binary.NativeEndian.Uint16(a[2:4]) {
			case attrMark:
				line += " mark=" + hex.EncodeToString(a[4:8])
			case attrPayload:
				line += fmt.Sprintf(" bytes=%d", l-4)
			}
			a = a[align4(l):]
		}
		lines = append(lines, line)
		b = b[n:]
	}
	return lines
}

func TestVerdicts(t *testing.T) {
	littleEndian(t)
	accept := action{verdict: nfqueue.NfAccept}
	modify := action{verdict: nfqueue.NfAccept, packet: true}
	mark := action{verdict: nfqueue.NfAccept, setMark: true, mark: 7}
	drop := action{verdict: nfqueue.NfDrop}
	seq := []action{accept, accept, accept, modify, accept, drop, mark, accept, accept}
	tests := []struct {
		name     string
		coalesce bool
		want     []string
	}{
		{
			name:     "fail-open queue: runs of plain accepts batched",
			coalesce: true,
			want: []string{
				"B 3 accept", "V 4 accept bytes=3", "V 5 accept", "V 6 drop",
				"V 7 accept mark=00000007", "B 9 accept",
			},
		},
		{
			name: "stateful queue: every packet by its id",
			want: []string{
				"V 1 accept", "V 2 accept", "V 3 accept", "V 4 accept bytes=3", "V 5 accept",
				"V 6 drop", "V 7 accept mark=00000007", "V 8 accept", "V 9 accept",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verdicts{queue: 3, coalesce: tt.coalesce}
			for i, a := range seq {
				v.add(uint32(i+1), a, []byte{1, 2, 3})
			}
			want := v.pending()
			got := v.bytes()
			if len(got) != want {
				t.Errorf("pending() = %d, bytes() is %d long", want, len(got))
			}
			if diff := cmp.Diff(tt.want, verdictLines(t, got)); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
			v.reset()
			if len(v.bytes()) != 0 {
				t.Errorf("bytes after reset = %x", v.bytes())
			}
		})
	}
}

func TestPlainVerdict(t *testing.T) {
	littleEndian(t)
	full := appendVerdictMsg(nil, 3, false, 10, action{verdict: nfqueue.NfAccept, packet: true, setMark: true, mark: 1}, []byte{1, 2, 3})
	want := appendVerdictMsg(nil, 3, false, 10, action{verdict: nfqueue.NfAccept}, nil)
	if diff := cmp.Diff(want, plainVerdict(full)); diff != "" {
		t.Errorf("plainVerdict (-want +got):\n%s", diff)
	}
}

func TestConfigMsgs(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{
			name: "queue bind",
			got:  finishMsg(appendCfgCmd(appendConfigMsg(nil, 7), cfgCmdBind), 0),
			want: `
				1c000000 0203 0500 00000000 00000000   # NFQNL_MSG_CONFIG, NLM_F_REQUEST|NLM_F_ACK
				00 00 0007
				0800 0100 01 00 0000                   # NFQA_CFG_CMD: bind, pad, pf 0
			`,
		},
		{
			name: "copy mode and range",
			got:  finishMsg(appendCfgParams(appendConfigMsg(nil, 7), 0xffff), 0),
			want: `
				20000000 0203 0500 00000000 00000000
				00 00 0007
				0900 0200 0000ffff 02 000000           # NFQA_CFG_PARAMS: range, NFQNL_COPY_PACKET
			`,
		},
		{
			name: "flags and queue length",
			got: finishMsg(appendAttrU32(appendAttrU32(appendAttrU32(appendConfigMsg(nil, 7),
				attrCfgFlags, nfqueue.NfQaCfgFlagGSO|nfqueue.NfQaCfgFlagFailOpen),
				attrCfgMask, nfqueue.NfQaCfgFlagGSO|nfqueue.NfQaCfgFlagFailOpen),
				attrCfgQueueMaxLen, 4096), 0),
			want: `
				2c000000 0203 0500 00000000 00000000
				00 00 0007
				0800 0500 00000005                     # NFQA_CFG_FLAGS: GSO | FAIL_OPEN
				0800 0400 00000005                     # NFQA_CFG_MASK
				0800 0300 00001000                     # NFQA_CFG_QUEUE_MAXLEN: 4096
			`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(hex.EncodeToString(unhex(t, tt.want)), hex.EncodeToString(tt.got)); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
		})
	}
}

// appendPacketMsg builds the NFQNL_MSG_PACKET message the kernel would
// send for pkt, as the benchmarks, loop tests and fuzz seeds need.
func appendPacketMsg(b []byte, queue uint16, id, mark, skbInfo uint32, pkt []byte) []byte {
	start := len(b)
	b = appendMsgHeader(b, msgTypePacket, 0, queue)
	var hdr [packetHdrLen]byte
	binary.BigEndian.PutUint32(hdr[:], id)
	hdr[4], hdr[5], hdr[6] = 0x08, 0x00, 1
	b = appendAttr(b, attrPacketHdr, hdr[:])
	if mark != 0 {
		b = appendAttrU32(b, attrMark, mark)
	}
	b = appendAttrU32(b, attrSkbInfo, skbInfo)
	b = appendAttr(b, attrPayload, pkt)
	return finishMsg(b, start)
}

func TestAppendPacketMsgRoundTrip(t *testing.T) {
	pkt := []byte{0x45, 0, 0, 20, 1, 2, 3}
	b := appendPacketMsg(nil, 3, 42, 0x25000000, 1, pkt)
	var q queued
	kind, rest := nextMsg(b, &q)
	want := queued{id: 42, mark: 0x25000000, skbInfo: 1, payload: pkt}
	if kind != msgPacket || len(rest) != 0 {
		t.Errorf("nextMsg = %v, %d bytes left; want a packet, 0", kind, len(rest))
	}
	if diff := cmp.Diff(want, q, cmp.AllowUnexported(queued{})); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
}

// FuzzNextMsg: any datagram decodes without panicking, every step makes
// progress, and a packet's payload lies inside the datagram.
func FuzzNextMsg(f *testing.F) {
	f.Add(appendPacketMsg(nil, 3, 42, 0x25000000, 1, []byte{0x45, 0, 0, 20, 1, 2, 3}))
	f.Add(append(appendPacketMsg(nil, 3, 1, 0, 0, nil), appendPacketMsg(nil, 3, 2, 0, 2, []byte{0x60})...))
	f.Add(appendVerdictMsg(nil, 3, false, 1, action{verdict: nfqueue.NfAccept, packet: true}, []byte{1, 2}))
	cut := appendPacketMsg(nil, 3, 9, 0, 0, make([]byte, 100))
	f.Add(cut[:60])
	f.Fuzz(func(t *testing.T, b []byte) {
		var q queued
		for steps := 0; len(b) > 0; steps++ {
			if steps > len(b)+1 {
				t.Fatal("no progress")
			}
			var kind msgKind
			var rest []byte
			kind, rest = nextMsg(b, &q)
			if len(rest) >= len(b) {
				t.Fatalf("nextMsg made no progress on %x", b)
			}
			if kind == msgPacket && len(q.payload) > 0 {
				end := cap(b) - cap(q.payload) + len(q.payload)
				if end > len(b) || cap(q.payload) > cap(b) {
					t.Fatalf("payload outside the datagram")
				}
			}
			if q.cut && len(rest) != 0 {
				t.Fatalf("a cut message left %d bytes", len(rest))
			}
			b = rest
		}
	})
}
