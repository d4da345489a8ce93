package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/diagnose"
)

const diagnoseUsage = `usage: tcpnorm diagnose [--json] [--domain NAME] [--local ADDR[,ADDR...]] FILE

Reads a pcap or pcapng capture, plain or compressed with gzip or zstd
(Ethernet, Linux cooked SLL/SLL2 or raw IP; IPv4 and IPv6), finds the TCP path fault in it (window-scale mismatch, PAWS
discards, SYN-option black hole, path-MTU black hole, broken SACK, bad
checksums) with the evidence, and prints the policy file that works around it
and a paragraph for the upstream ticket. FILE "-" reads standard input.

Exit status: 0 the capture was analysed (healthy or not: the verdict line and
"verdict" in --json say which), 1 the file could not be read, 2 usage error.
`

// runDiagnose is `tcpnorm diagnose FILE`.
func runDiagnose(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	domain := fs.String("domain", "", "the peer's mail `domain` for the policy (default: the peer's address as a /32 or /128)")
	local := fs.String("local", "", "the capturing host's `addresses` or prefixes, comma-separated (default: inferred)")
	maxConns := fs.Int("max-conns", diagnose.DefaultMaxConns, "connections analysed at once (memory bound)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), diagnoseUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	// Flags may follow the file name.
	files, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	usageErr := func(format string, a ...any) int { return usageError(fs, stderr, format, a...) }
	switch {
	case len(files) == 0:
		return usageErr("missing FILE")
	case len(files) > 1:
		return usageErr("unexpected argument %q", files[1])
	}
	opt := diagnose.Options{MaxConns: *maxConns}
	if *domain != "" {
		// The policy file names it: what check rejects is an error here.
		d, err := config.CheckDomain(*domain)
		if err != nil {
			return usageErr("--domain: %v (without --domain the policy names the peer by its address)", err)
		}
		opt.Domain = d
	}
	if *local != "" {
		for _, s := range strings.Split(*local, ",") {
			s = strings.TrimSpace(s)
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return usageErr("--local: %q is neither an address nor a prefix", s)
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			opt.Local = append(opt.Local, p.Masked())
		}
	}
	name := files[0]
	in := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "tcpnorm diagnose: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	rep, err := diagnose.Diagnose(in, opt)
	if err != nil {
		fmt.Fprintf(stderr, "tcpnorm diagnose: %s: %v\n", name, err)
		return 1
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout, name)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpnorm diagnose: %v\n", err)
		return 1
	}
	return 0
}
