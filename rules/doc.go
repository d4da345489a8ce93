//go:build linux

// Package rules builds, installs and removes the iptables and ip6tables rules
// that send TCP handshakes to tcpnorm's queues, and the kernel address sets
// (ipset hash:net) those rules match.
//
// It owns the mangle-table chains named TCPNORM-* and the jump rules to them
// from the built-in chains, and the sets tcpnorm4-qFIRST and tcpnorm6-qFIRST
// (FIRST: the first queue number). It must never add, change or delete any
// other rule or set: removal deletes only jumps to tcpnorm's chains, the
// chains themselves and its own sets, so the operator's are untouched.
//
// Rules live in mangle (after conntrack has seen the packet, never in raw):
// FORWARD in gateway mode, OUTPUT and INPUT in host mode. They queue segments
// with SYN set (SYN and SYN-ACK) whose remote address is in the family's
// set, with --queue-balance, whose hash covers addresses only, so both
// directions of a connection reach one worker, and --queue-bypass, so
// traffic flows while tcpnorm is not running. Handshakes with any other
// peer never leave the kernel.
//
// Install creates the sets (keeping an earlier run's), then applies each
// family's rules with one `iptables-restore --noflush` that also deletes an
// earlier run's jumps and chains in the same commit per table, so a crashed
// run's rules are replaced, never duplicated, and the flows it leaves never
// pass without rules in between; Uninstall removes the rules before the
// sets, which cannot be destroyed while a rule matches them. UpdateSets
// swaps new contents into the sets atomically. On a host with no earlier
// run's rules, the text Install feeds to the tools is exactly what
// Ruleset.String prints; over an earlier run's, each table's part starts
// by deleting its jumps and ends by deleting the chains no longer used.
package rules
