// Command tcpnorm is an inline TCP option normalizer for Linux gateways and
// hosts: an NFQUEUE consumer that strips, clamps or drops TCP options per
// peer policy. See README.md.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/tcpnorm/tcpnorm/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: tcpnorm COMMAND [ARGS]

commands:
  run [-c FILE]         run the daemon (default config ` + "/etc/tcpnorm/tcpnorm.toml" + `)
  check [-c FILE]       validate config and policies, print the resolved policy table
  rules [-c FILE]       print the iptables/ip6tables rules run installs
  lab                   build a namespace lab showing a faulty path fixed (root)
  diagnose FILE.pcap    find the failure class in a capture, print the fixing policy
  version               print the version
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the subcommand in args and returns the exit status: 0 ok,
// 1 failure, 2 usage error.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest)
	case "check":
		return cmdCheck(rest)
	case "rules":
		return cmdRules(rest, stdout, stderr)
	case "lab":
		return cmdLab(rest)
	case "diagnose":
		return cmdDiagnose(rest)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "tcpnorm %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tcpnorm: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// parseConfigFlag parses the arguments of `tcpnorm NAME [-c FILE]` and
// returns the config file's path; ok false means the usage was printed and
// the exit status is 2.
func parseConfigFlag(name, help string, args []string, stderr io.Writer) (path string, ok bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p := fs.String("c", config.DefaultPath, "config `FILE`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tcpnorm %s [-c FILE]\n\n%s\n", name, help)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return "", false
	}
	return *p, true
}
