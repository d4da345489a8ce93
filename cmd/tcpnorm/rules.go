package main

import (
	"fmt"
	"io"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/rules"
)

// cmdRules prints the rules `run` installs for the config.
func cmdRules(args []string, stdout, stderr io.Writer) int {
	path, ok := parseConfigFlag("rules", "Prints the iptables and ip6tables rules `tcpnorm run` installs, as fed to\niptables-restore --noflush and ip6tables-restore --noflush.", args, stderr)
	if !ok {
		return 2
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
		fmt.Fprintln(stdout, "# [rules] install = false: tcpnorm run installs nothing; install these yourself.")
	}
	fmt.Fprint(stdout, rs.String())
	return 0
}

func ruleSpec(cfg *config.Config) rules.Spec {
	return rules.Spec{Mode: cfg.Rules.Mode, First: cfg.Queue.First, Count: cfg.Queue.Count, Mark: cfg.Rules.Mark}
}
