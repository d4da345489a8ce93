// Package suspects reads the mail logs of Postfix, Exim and Sendmail and
// lists the destinations (outbound: recipient domains, their MX hosts and
// addresses) and the peers (inbound: client addresses) whose message bodies
// stalled: deliveries that timed out or lost the connection while the body
// was being sent, and client sessions that died after DATA. For each suspect
// it gives the evidence a log can give (stalls, deliveries over the same
// path that worked, message sizes: small mails pass and large ones stall is
// the tell-tale) and the next command to run, `tcpnorm probe` or a capture
// for `tcpnorm diagnose`.
//
// It owns the log line parsers (each MTA's own formats, checked against the
// MTAs' sources: see the comments at each parser), the per-message joining
// of sizes and recipients by queue ID, and the report. It never names a
// fault class and never proposes a policy: a log cannot tell a window-scale
// fault from a timestamp scrambler or a path-MTU black hole, only a capture
// or a probe can.
//
// It streams: memory is bounded by the number of messages whose state it
// keeps (Options.MaxMessages; the oldest is dropped and counted) and by one
// small record per destination host, domain and peer (Options.MaxPeers).
// A line it does not understand is counted, never an error; the only
// errors are the reader's own.
package suspects
