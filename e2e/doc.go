//go:build linux

// Package e2e holds tcpnorm's end-to-end tests: the real daemon on the
// gateway of a namespace lab (package lab), real kernel sockets, each path
// fault class of the design, IPv4 and IPv6. They need root and skip with a
// message otherwise.
package e2e
