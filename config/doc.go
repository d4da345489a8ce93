// Package config owns tcpnorm.toml and the policy files of policy_dir: strict
// parsing with FILE:LINE:COL errors for every problem in one run, the
// StrictModes-like ownership check of policy files, resolution of each
// policy's domain (A/AAAA, MX hosts per RFC 5321/7505, SPF senders per
// RFC 7208) with TTL-aware refresh, and compilation into the immutable
// longest-prefix-match Table that normalize reads on the packet path.
//
// It must never drop protection silently: a DNS failure keeps the last known
// addresses, cidrs apply even when DNS is down, a failed reload keeps the
// table in force, and an expired policy stops applying at its instant, loudly.
// Table.Lookup runs per packet: it must not allocate or lock.
package config
