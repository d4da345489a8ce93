//go:build linux

package main

import (
	"fmt"
	"io"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/rules"
)

// cmdRules prints the rules `run` installs for the config.
func cmdRules(args []string, stdout, stderr io.Writer) int {
	path, code, ok := parseConfigFlag("rules", "Prints what `tcpnorm run` installs, in order: the address sets (as fed to\nipset restore; run fills them with every policy's addresses), then the\niptables and ip6tables rules (as fed to iptables-restore --noflush and\nip6tables-restore --noflush).", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rs, err := rules.Build(ruleSpec(cfg))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if !cfg.Rules.Install {
		fmt.Fprintln(stdout, "# [rules] install = false: tcpnorm run installs no rules; install these yourself.\n"+
			"# It still creates the sets and keeps them filled, and leaves them in place on exit.")
	}
	fmt.Fprint(stdout, rs.String())
	return 0
}

func ruleSpec(cfg *config.Config) rules.Spec {
	return rules.Spec{Mode: cfg.Rules.Mode, First: cfg.Queue.First, Count: cfg.Queue.Count, Mark: cfg.Rules.Mark}
}
