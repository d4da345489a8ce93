//go:build linux

// Package bench is the daemon benchmark harness behind `make bench`: tcpnorm
// side by side with kernel forwarding, an in-kernel TCPOPTSTRIP, a naive Go
// NFQUEUE consumer and a C consumer on libnetfilter_queue, on one
// client -- gateway -- server namespace topology.
//
// It owns that topology (three namespaces joined by veth pairs, addresses
// only in 198.18.0.0/15, RFC 2544), the readers of the kernel counters the
// results come from (/proc/net/netfilter/nfnetlink_queue, /proc/PID/stat,
// /proc/net/snmp, the daemon's /metrics), the statistics over several runs
// and the BENCHMARKS.md section they are reported in.
//
// It must never send traffic outside its namespaces, and it removes every
// namespace and process it started on every exit path. The programs it
// drives live under cmd/ (tnbench, connload, naiveq) and cq/ (the C
// consumer). Everything but the parsers and the report needs root.
package bench
