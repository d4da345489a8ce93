//go:build linux

// Package netns is the namespace and process toolkit of tcpnorm's
// kernel tests: the lab (package lab) with the end-to-end tests on it, and
// the benchmarks (package bench).
//
// It owns named network namespaces (unique names, removal of the leftovers
// of dead runs, deletion with the processes left in them), running code
// and commands inside them (InNetns, Run, StartProc), their sysctls and
// /proc/net counters, HTTP requests from inside them, and packet captures
// on their interfaces.
//
// It knows no topology and no address: those belong to its callers, which
// keep to 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180). It must
// never change the host's own network configuration: sysctls are written
// in a named namespace only, and a command run without one is the
// caller's `ip netns` or `ip -n NAME`. It kills only the processes inside
// a namespace it deletes. Everything but the parsers needs root.
package netns
