// Package evidence keeps proof of what tcpnorm changed, for the upstream
// ticket: for each policy with evidence = true, a pcapng file holding every
// handshake segment of its connections twice, as received and as sent (or
// marked unchanged, dropped, or what log-only would have done), each with a
// packet comment naming the policy, its ticket and the change.
//
// It owns the record the queue workers fill, the bounded queue to the one
// goroutine that writes the files, their rotation, and reading them back
// (`tcpnorm report`). Workers hand records over without blocking: when the
// queue is full the record is dropped and counted. A file error (directory
// missing and not creatable, disk full) is logged and counted, never fatal.
//
// pcapng is draft-ietf-opsawg-pcapng: gopacket's pcapgo writes the section
// and interface blocks; the enhanced packet blocks are written here because
// pcapgo v1.1.19 cannot give one an opt_comment (option 1).
package evidence
