// Command tcpnorm is an inline TCP option normalizer for Linux gateways and
// hosts: an NFQUEUE consumer that strips, clamps or drops TCP options per
// peer policy. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
)

const usage = `usage: tcpnorm COMMAND [ARGS]

commands:
  run [-c FILE]            run the daemon (default config ` + "/etc/tcpnorm/tcpnorm.toml" + `)
  check [-c FILE]          validate config and policies, print the resolved policy table
  rules [-c FILE]          print the address sets and iptables/ip6tables rules run installs
  status [-c FILE]         ask the running daemon what each policy and queue is doing
  report [-c FILE] POLICY  a summary of one policy for the upstream ticket
  lab [FLAGS]              build a namespace lab showing a faulty path fixed (root)
  diagnose [FLAGS] FILE    find the failure class in a capture, print the fixing policy
  probe [FLAGS] TARGET...  test the path to a domain's mail hosts, print the fixing policy (root)
  suspects [FLAGS] FILE... list the destinations and peers whose bodies stalled, from mail logs
  version                  print the version
  help [COMMAND]           this text, or a command's usage and flags

tcpnorm COMMAND --help prints the command's usage and every flag's meaning.
Exit status: 0 success, 1 failure, 2 usage error.
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
		return cmdRun(rest, stdout, stderr)
	case "check":
		return runCheck(rest, stdout, stderr, checkDNSWait)
	case "rules":
		return cmdRules(rest, stdout, stderr)
	case "status":
		return runStatus(rest, stdout, stderr, nil)
	case "report":
		return runReport(rest, stdout, stderr, time.Now())
	case "lab":
		return cmdLab(rest, stdout, stderr)
	case "diagnose":
		return runDiagnose(rest, os.Stdin, stdout, stderr)
	case "probe":
		return cmdProbe(rest, stdout, stderr)
	case "suspects":
		return runSuspects(rest, os.Stdin, stdout, stderr, time.Now())
	case "version", "-version", "--version":
		switch {
		case len(rest) == 1 && isHelp(rest[0]):
			fmt.Fprint(stdout, versionUsage)
			return 0
		case len(rest) > 0:
			fmt.Fprintf(stderr, "tcpnorm version: unexpected argument %q\n\n%s", rest[0], versionUsage)
			return 2
		}
		readBuild().write(stdout)
		return 0
	case "help", "-h", "-help", "--help":
		if len(rest) == 1 && cmd == "help" && rest[0] != "help" {
			return dispatch([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tcpnorm: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// command is one subcommand's command line: -c FILE, its own flags and
// nargs positional arguments.
type command struct {
	name  string
	args  string // the positional arguments in the usage line, e.g. "POLICY"
	nargs int
	help  string
	flags func(fs *flag.FlagSet) // its own flags, besides -c; may be nil
}

// parse parses args (flags may follow the positional arguments). ok false
// means the command ends with code: 0 after --help (usage on stdout), 2
// after a usage error (usage on stderr).
func (c command) parse(args []string, stdout, stderr io.Writer) (path string, pos []string, code int, ok bool) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	p := fs.String("c", config.DefaultPath, "config `FILE`")
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() {
		line := "usage: tcpnorm " + c.name + " [-c FILE]"
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name != "c" {
				line += " [--" + f.Name + "]"
			}
		})
		if c.args != "" {
			line += " " + c.args
		}
		fmt.Fprintf(fs.Output(), "%s\n\n%s\n\nflags:\n", line, c.help)
		fs.PrintDefaults()
	}
	if pos, code, ok = parseFlags(fs, args, stdout, stderr); !ok {
		return "", nil, code, false
	}
	switch {
	case len(pos) > c.nargs:
		return "", nil, usageError(fs, stderr, "unexpected argument %q", pos[c.nargs]), false
	case len(pos) < c.nargs:
		return "", nil, usageError(fs, stderr, "missing %s", c.args), false
	}
	return *p, pos, 0, true
}

// parseFlags parses args with fs, letting flags follow the positional
// arguments, which it returns. fs.Usage must write to fs.Output(). ok false
// means the command ends with code: 0 after -h or --help (usage on
// stdout), 2 after a bad flag (the error and usage on stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (pos []string, code int, ok bool) {
	fs.SetOutput(io.Discard)
	for rest := args; ; {
		err := fs.Parse(rest)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, 0, false
		}
		if err != nil {
			return nil, usageError(fs, stderr, "%v", err), false
		}
		if fs.NArg() == 0 {
			return pos, 0, true
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

// usageError reports a wrong command line the one way every command does:
// "tcpnorm CMD: message", a blank line and the usage on stderr; exit
// status 2.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "tcpnorm %s: "+format+"\n\n", append([]any{fs.Name()}, a...)...)
	fs.SetOutput(stderr)
	fs.Usage()
	return 2
}

// parseConfigFlag parses the arguments of `tcpnorm NAME [-c FILE]` and
// returns the config file's path; ok false means the command ends with code.
func parseConfigFlag(name, help string, args []string, stdout, stderr io.Writer) (path string, code int, ok bool) {
	path, _, code, ok = command{name: name, help: help}.parse(args, stdout, stderr)
	return path, code, ok
}
