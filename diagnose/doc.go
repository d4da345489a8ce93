// Package diagnose reads a packet capture (pcap or pcapng) and finds the TCP
// path faults tcpnorm can fix: a window-scale mismatch, a window-limit
// firewall (a box tracking windows with a smaller shift than negotiated),
// PAWS discards caused by mangled timestamps, a SYN-option black hole, a
// path-MTU black hole and broken SACK. It also reports bad checksums (with
// the checksum-offload caveat), window overruns no shift explains, and plain
// loss, which no TCP option policy fixes. An operator deploys what it
// proposes, so it proposes a policy only on positive evidence: a finding
// resting on absence alone (silence, a capture that ended) is "suspected"
// and carries none. For each finding
// it names the vantage point it assumed (the capture shows the sender's or
// the receiver's view of the data), lists the evidence with packet numbers
// and sequence, acknowledgment, window and option values, and proposes the
// minimal policy file (see the design's policy file format).
//
// It owns the capture reader, the per-connection analysis and the report.
// It streams the capture: memory is bounded by the number of open
// connections (Options.MaxConns; the least recently active is evicted and
// counted). It never panics on bad input: a corrupt record is an error with
// its byte offset; a truncated last record or snapped packets are warnings
// and counted.
//
// Of the payload it interprets only an SMTP server's 354 reply (RFC 5321
// section 4.1.1.4), to say that a mail's body stopped right after the
// go-ahead.
//
// Parsing of IP and TCP headers and of TCP options reuses the normalize
// package's views and option iterator. RFCs: 9293 (TCP), 7323 (window scale,
// timestamps, PAWS), 2018 (SACK), 1191 and 8201 (path MTU discovery),
// 1071 (checksum), 5321 (SMTP replies).
package diagnose
