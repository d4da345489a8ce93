//go:build linux

// Package lab builds throw-away network namespace labs for tcpnorm:
//
//	client (the MTA) -- gateway (tcpnorm) -- path (a faulty middlebox) -- server (remote MX)
//
// It owns the namespaces, links, addresses and routes of one lab, the fault
// injected by the path box, a DNS server for the lab's domain inside the
// server namespace, real kernel-socket transfers between client and server,
// the TCP segments of a capture, running the tcpnorm daemon on the gateway,
// and MTA instances (Postfix, Exim, Sendmail) on its boxes. Creating
// namespaces, running commands and programs in them and capturing on their
// interfaces is package internal/netns's.
//
// It must never send traffic outside its namespaces or use addresses other
// than 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180), and it removes
// every namespace it created on every exit path. Everything here needs root.
package lab
