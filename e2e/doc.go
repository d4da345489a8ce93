//go:build linux

// Package e2e holds tcpnorm's end-to-end tests: the real daemon on the
// gateway of a namespace lab (package lab), real kernel sockets, each path
// fault class of the design, IPv4 and IPv6. They need root and skip with a
// message otherwise.
//
// The load beyond a lab transfer is made here: batches of transfers at
// once to one listener, and packets injected raw from the client (the
// hostile set of broken headers, SYN floods).
package e2e
