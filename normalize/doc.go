// Package normalize is tcpnorm's packet core: it parses an IPv4 or IPv6 packet
// carrying TCP in place, looks up the policy for the remote peer, and strips,
// clamps or drops TCP options of connection handshakes, fixing the checksum.
//
// It owns the header views (IPv4, IPv6, TCP), the option walker, the one
// printer of options (tcpdump's form, for logs, reports and tests), checksum
// arithmetic and the per-worker handshake table that carries a SYN's decision
// to its SYN-ACK.
//
// It must never do I/O, never allocate on the packet path, never panic on any
// input, and never change a packet's length: options are stripped by
// overwriting them with NOP. A packet it cannot parse is accepted unchanged.
//
// It follows RFC 9293 (TCP header and option walking), RFC 7323 (window scale
// and timestamps: "the SYN decides, the SYN-ACK follows"; shifts above 14 count
// as 14), RFC 2018 (SACK-permitted only in SYNs), RFC 3168 and RFC 9768 (ECN
// and AccECN negotiation flags), RFC 2385 and RFC 5925 (MD5 and TCP-AO
// authenticate the header: segments carrying them are never modified), RFC
// 1071 and RFC 1624 (checksums, incremental update), RFC 8200 (IPv6 extension
// headers).
package normalize
