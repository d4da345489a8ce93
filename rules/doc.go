// Package rules builds, installs and removes the iptables and ip6tables rules
// that send TCP handshakes to tcpnorm's queues.
//
// It owns the mangle-table chains named TCPNORM-* and the jump rules to them
// from the built-in chains. It must never add, change or delete any other
// rule: removal deletes only jumps to tcpnorm's chains and the chains
// themselves, so the operator's rules are untouched.
//
// Rules live in mangle (after conntrack has seen the packet, never in raw):
// FORWARD in gateway mode, OUTPUT and INPUT in host mode. They queue segments
// with SYN set (SYN and SYN-ACK) with --queue-balance, whose hash covers
// addresses only, so both directions of a connection reach one worker, and
// --queue-bypass, so traffic flows while tcpnorm is not running.
//
// Install applies each family's rules with `iptables-restore --noflush`
// (atomic per family) after removing stale rules from an earlier run, so a
// crashed run's rules are replaced, never duplicated. The text Install feeds
// to the restore tools is exactly what Ruleset.String prints.
package rules
