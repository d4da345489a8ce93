//go:build !linux

package main

import (
	"fmt"
	"io"
)

// Off Linux the commands that work the kernel's netfilter, sockets and
// namespaces (NFQUEUE, iptables and ipset, TCP_INFO, SO_MARK) only say so.
// check, status, report, diagnose, suspects and version work anywhere: an
// analyst reads a capture or a mail log on a laptop.

func cmdRun(_ []string, _, stderr io.Writer) int   { return linuxOnly("run", stderr) }
func cmdRules(_ []string, _, stderr io.Writer) int { return linuxOnly("rules", stderr) }
func cmdLab(_ []string, _, stderr io.Writer) int   { return linuxOnly("lab", stderr) }
func cmdProbe(_ []string, _, stderr io.Writer) int { return linuxOnly("probe", stderr) }

func linuxOnly(name string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "tcpnorm %s: Linux only\n", name)
	return 1
}
