//go:build linux

package nfq

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// The nfnetlink_queue wire format (include/uapi/linux/netlink.h,
// netfilter/nfnetlink.h, netfilter/nfnetlink_queue.h). Netlink message and
// attribute headers are in host byte order, nfnetlink_queue's own fields in
// network byte order.

// Message types of the queue subsystem (enum nfqnl_msg_types).
const (
	msgTypePacket       = unix.NFNL_SUBSYS_QUEUE<<8 | 0 // NFQNL_MSG_PACKET, kernel to us
	msgTypeVerdict      = unix.NFNL_SUBSYS_QUEUE<<8 | 1 // NFQNL_MSG_VERDICT
	msgTypeConfig       = unix.NFNL_SUBSYS_QUEUE<<8 | 2 // NFQNL_MSG_CONFIG
	msgTypeVerdictBatch = unix.NFNL_SUBSYS_QUEUE<<8 | 3 // NFQNL_MSG_VERDICT_BATCH
)

// Attribute types of packet and verdict messages (enum nfqnl_attr_type).
const (
	attrPacketHdr  = 1  // NFQA_PACKET_HDR: struct nfqnl_msg_packet_hdr
	attrVerdictHdr = 2  // NFQA_VERDICT_HDR: struct nfqnl_msg_verdict_hdr
	attrMark       = 3  // NFQA_MARK: __be32
	attrPayload    = 10 // NFQA_PAYLOAD: the packet from its network header
	attrCapLen     = 13 // NFQA_CAP_LEN: __be32 packet length, when longer than the copy
	attrSkbInfo    = 14 // NFQA_SKB_INFO: __be32 NFQA_SKB_* bits
)

// Attribute types of config messages (enum nfqnl_attr_config) and the
// commands of NFQA_CFG_CMD (enum nfqnl_msg_config_cmds).
const (
	attrCfgCmd         = 1 // struct nfqnl_msg_config_cmd
	attrCfgParams      = 2 // struct nfqnl_msg_config_params
	attrCfgQueueMaxLen = 3 // __be32
	attrCfgMask        = 4 // __be32: the flags being set
	attrCfgFlags       = 5 // __be32: their values

	cfgCmdBind     = 1
	cfgCmdUnbind   = 2
	cfgCmdPFBind   = 3
	cfgCmdPFUnbind = 4

	copyModePacket = 2 // NFQNL_COPY_PACKET
)

// Sizes on the wire.
const (
	nfgenHdrLen     = 4 // struct nfgenmsg
	packetHdrLen    = 7 // struct nfqnl_msg_packet_hdr (packed)
	verdictHdrLen   = 8 // struct nfqnl_msg_verdict_hdr
	attrTypeMask    = 0x3fff
	maxCopyRange    = 0xffff - unix.NLA_HDRLEN // NFQNL_MAX_COPY_RANGE
	verdictFixedLen = unix.NLMSG_HDRLEN + nfgenHdrLen + unix.NLA_HDRLEN + verdictHdrLen
	markAttrLen     = unix.NLA_HDRLEN + 4
)

// msgOverhead bounds what a packet message carries besides its payload:
// netlink and nfgenmsg headers, packet header, interfaces, mark, hardware
// address, timestamp, skb info, cap len, VLAN, priority, the payload's
// attribute header. Conntrack, UID/GID and security context attributes are
// never asked for.
const msgOverhead = 512

func align4(n int) int { return (n + 3) &^ 3 }

// msgKind classifies one netlink message read from a queue socket.
type msgKind uint8

const (
	msgIgnored   msgKind = iota // NOOP, DONE, types the worker does not use
	msgPacket                   // NFQNL_MSG_PACKET with its packet id
	msgAck                      // NLMSG_ERROR without an error: a request acknowledged
	msgError                    // NLMSG_ERROR carrying an errno: a refused request
	msgMalformed                // cannot be read, or a packet message without an id
)

// queued is what one netlink message from the queue says. For a packet its
// slices point into the receive buffer: valid until the next receive.
type queued struct {
	id      uint32
	payload []byte
	mark    uint32
	skbInfo uint32
	// truncated: the kernel copied less than the whole packet
	// (NFQA_CAP_LEN present).
	truncated bool
	// cut: the message itself was cut short by the receive buffer, so the
	// payload is incomplete. The packet can only be accepted unchanged.
	cut bool
	// errno of an msgError.
	errno unix.Errno
	// seq is the sequence number of the message (of an msgAck or
	// msgError: the request's).
	seq uint32
}

// nextMsg decodes the first netlink message of b, a datagram from the queue
// socket, into q, and returns its kind and the rest of the datagram. It
// never fails: whatever cannot be read is msgMalformed, and the rest is then
// empty. A message longer than b (the datagram was cut by the receive
// buffer) is read as far as it goes and marked cut; the packet header comes
// first and the payload last, so the id survives.
func nextMsg(b []byte, q *queued) (msgKind, []byte) {
	*q = queued{}
	if len(b) < unix.NLMSG_HDRLEN {
		return msgMalformed, nil
	}
	n := int(binary.NativeEndian.Uint32(b[0:4]))
	typ := binary.NativeEndian.Uint16(b[4:6])
	q.seq = binary.NativeEndian.Uint32(b[8:12])
	if n < unix.NLMSG_HDRLEN {
		return msgMalformed, nil
	}
	var rest []byte
	if n > len(b) {
		q.cut = true
		n = len(b)
	} else {
		rest = b[min(align4(n), len(b)):]
	}
	body := b[unix.NLMSG_HDRLEN:n]
	switch typ {
	case unix.NLMSG_ERROR:
		// struct nlmsgerr: int error, then the request's header.
		if len(body) < 4 {
			return msgMalformed, rest
		}
		e := int32(binary.NativeEndian.Uint32(body[0:4]))
		if e == 0 {
			return msgAck, rest
		}
		q.errno = unix.Errno(-e)
		return msgError, rest
	case msgTypePacket:
		if len(body) < nfgenHdrLen || !q.packetAttrs(body[nfgenHdrLen:]) {
			return msgMalformed, rest
		}
		return msgPacket, rest
	}
	return msgIgnored, rest
}

// packetAttrs reads the attributes of a packet message; false if there is
// no packet header. A cut message may end inside its last attribute.
func (q *queued) packetAttrs(b []byte) bool {
	hasID := false
	for len(b) >= unix.NLA_HDRLEN {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & attrTypeMask
		if n < unix.NLA_HDRLEN {
			return false
		}
		if n > len(b) {
			if !q.cut {
				return false
			}
			n = len(b)
		}
		data := b[unix.NLA_HDRLEN:n]
		switch typ {
		case attrPacketHdr:
			if len(data) < packetHdrLen {
				return false
			}
			q.id = binary.BigEndian.Uint32(data)
			hasID = true
		case attrMark:
			if len(data) >= 4 {
				q.mark = binary.BigEndian.Uint32(data)
			}
		case attrSkbInfo:
			if len(data) >= 4 {
				q.skbInfo = binary.BigEndian.Uint32(data)
			}
		case attrCapLen:
			q.truncated = true
		case attrPayload:
			q.payload = data
		}
		b = b[min(align4(n), len(b)):]
	}
	return hasID
}

// appendMsgHeader starts a netlink message with its nfgenmsg. Its length is
// set by finishMsg once its attributes are appended.
func appendMsgHeader(b []byte, typ, flags uint16, resID uint16) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, 0) // sequence: the kernel does not check it
	b = binary.NativeEndian.AppendUint32(b, 0) // port id 0: the kernel
	// struct nfgenmsg: family (the queue subsystem ignores it), version,
	// resource id (the queue number, big endian).
	b = append(b, unix.AF_UNSPEC, unix.NFNETLINK_V0)
	return binary.BigEndian.AppendUint16(b, resID)
}

// finishMsg sets the length of the message that starts at start.
func finishMsg(b []byte, start int) []byte {
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// appendAttr appends one attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.NLA_HDRLEN+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendAttrU32 appends an attribute holding one big-endian 32-bit value.
func appendAttrU32(b []byte, typ uint16, v uint32) []byte {
	b = binary.NativeEndian.AppendUint16(b, unix.NLA_HDRLEN+4)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint32(b, v)
}

// appendVerdictMsg appends an NFQNL_MSG_VERDICT (or, batch, an
// NFQNL_MSG_VERDICT_BATCH, which answers every queued id up to id) for
// queue.
func appendVerdictMsg(b []byte, queue uint16, batch bool, id uint32, act action, pkt []byte) []byte {
	start := len(b)
	typ := uint16(msgTypeVerdict)
	if batch {
		typ = msgTypeVerdictBatch
	}
	b = appendMsgHeader(b, typ, unix.NLM_F_REQUEST, queue)
	b = binary.NativeEndian.AppendUint16(b, unix.NLA_HDRLEN+verdictHdrLen)
	b = binary.NativeEndian.AppendUint16(b, attrVerdictHdr)
	b = binary.BigEndian.AppendUint32(b, uint32(act.verdict))
	b = binary.BigEndian.AppendUint32(b, id)
	if act.setMark {
		b = appendAttrU32(b, attrMark, act.mark)
	}
	if act.packet {
		b = appendAttr(b, attrPayload, pkt)
	}
	return finishMsg(b, start)
}

// verdictMsgLen is the length appendVerdictMsg gives the message.
func verdictMsgLen(act action, pkt []byte) int {
	n := verdictFixedLen
	if act.setMark {
		n += markAttrLen
	}
	if act.packet {
		n += align4(unix.NLA_HDRLEN + len(pkt))
	}
	return n
}

// verdicts collects the verdict messages for the packets of one receive, to
// go to the kernel in one sendmsg. Verdicts must be added in the order the
// packets were received (id order).
//
// With coalesce (fail-open queues only), a run of plain accepts is sent as
// one NFQNL_MSG_VERDICT_BATCH for the run's last id. That message accepts
// every packet still queued with an id up to it, which is only right
// because every lower id we received was answered earlier in the same
// sendmsg or in an earlier one; a packet whose queue message was lost is
// then accepted unchanged too, as fail-open would. Without coalesce every
// packet is answered by its own id, so a lost message never lets a packet
// through unrewritten.
type verdicts struct {
	b        []byte
	queue    uint16
	coalesce bool
	run      int    // plain accepts not yet written
	runLast  uint32 // the id of the last of them
}

// add appends the verdict for packet id.
func (v *verdicts) add(id uint32, act action, pkt []byte) {
	if v.coalesce && act == acceptUnchanged {
		v.run++
		v.runLast = id
		return
	}
	v.endRun()
	v.b = appendVerdictMsg(v.b, v.queue, false, id, act, pkt)
}

// endRun writes the pending run of plain accepts.
func (v *verdicts) endRun() {
	if v.run == 0 {
		return
	}
	v.b = appendVerdictMsg(v.b, v.queue, v.run > 1, v.runLast, acceptUnchanged, nil)
	v.run = 0
}

// bytes returns the messages collected, pending run included.
func (v *verdicts) bytes() []byte {
	v.endRun()
	return v.b
}

// pending is the length bytes would return.
func (v *verdicts) pending() int {
	if v.run > 0 {
		return len(v.b) + verdictFixedLen
	}
	return len(v.b)
}

// reset empties the batch, keeping its buffer.
func (v *verdicts) reset() {
	v.b = v.b[:0]
	v.run = 0
}

// plainVerdict rewrites a verdict message as it would be without its mark
// and payload attributes: the fallback when the kernel refused the full
// one. msg is one message appendVerdictMsg wrote.
func plainVerdict(msg []byte) []byte {
	if len(msg) < verdictFixedLen {
		return msg
	}
	msg = msg[:verdictFixedLen]
	binary.NativeEndian.PutUint32(msg[0:4], verdictFixedLen)
	return msg
}

// appendConfigMsg appends an NFQNL_MSG_CONFIG for queue with an
// acknowledgement requested; the attributes are appended by the caller,
// then finishMsg.
func appendConfigMsg(b []byte, queue uint16) []byte {
	return appendMsgHeader(b, msgTypeConfig, unix.NLM_F_REQUEST|unix.NLM_F_ACK, queue)
}

// appendCfgCmd appends an NFQA_CFG_CMD attribute (struct
// nfqnl_msg_config_cmd: command, pad, __be16 protocol family).
func appendCfgCmd(b []byte, cmd uint8) []byte {
	return appendAttr(b, attrCfgCmd, []byte{cmd, 0, 0, unix.AF_UNSPEC})
}

// appendCfgParams appends NFQA_CFG_PARAMS (struct nfqnl_msg_config_params:
// __be32 copy range, copy mode; packed).
func appendCfgParams(b []byte, copyRange uint32) []byte {
	var p [5]byte
	binary.BigEndian.PutUint32(p[:4], copyRange)
	p[4] = copyModePacket
	return appendAttr(b, attrCfgParams, p[:])
}
