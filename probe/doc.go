//go:build linux

// Package probe runs an active A/B test of the network path to a mail
// server: test connections, one per variant of the SYN's TCP options, each
// sending a message body that is never delivered, measured from the kernel.
//
// This part owns the trial: one test connection (Run), the workload it
// sends (Workload) and what the kernel says about it afterwards (Trial,
// from TCP_INFO). The socket mark (Workload.Mark) is how the variant's
// NFQUEUE rule finds the probe's SYN; rewriting the SYN is not done here.
//
// A trial must never deliver mail. Over SMTP the body goes either as BDAT
// chunks of which none is LAST, followed by RSET (RFC 3030: a RSET after
// the first BDAT and before BDAT LAST clears the chunks), or after DATA
// with the connection closed before the final "." line (RFC 5321 section
// 4.1.1.10: a server must cancel the pending transaction of a connection
// closed prematurely). A refusal before the body is
// inconclusive, never a path fault. The MAIL FROM is the null reverse path
// (RFC 5321 section 4.5.5), so nothing bounces to anyone.
//
// A trial is bounded: the body by MaxBytes, the trial by MaxTimeout, and it
// always closes its socket. Run never panics and never returns an error:
// local failures are a Trial with Outcome Failed. It changes nothing on the
// host beyond its own socket.
//
// The outcome rests on tcpi_bytes_acked, not on writes returning: a write
// returns once the data is in the send buffer, so a body is Completed only
// when the peer's TCP has acknowledged every byte handed to the socket.
// A peer that stops reading and a path that drops the data look the same
// from one trial (no ACK progress: Stalled); the comparison between the
// variants' trials tells them apart, not a trial alone.
package probe
