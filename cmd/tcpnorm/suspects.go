package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tcpnorm/tcpnorm/suspects"
)

const suspectsUsage = `usage: tcpnorm suspects [--since DURATION] [--json] [--max-messages N] FILE...|-

Reads Postfix, Exim and Sendmail logs (plain or gzip-compressed, whatever
the name; "-" reads standard input, e.g. journalctl -u postfix -o short-iso |
tcpnorm suspects -) and lists the destinations (outbound: recipient domains,
their MX hosts and addresses) and the peers (inbound: client addresses) whose
message bodies stalled, with the evidence: stalls, deliveries that worked,
the largest message that passed and the smallest that stalled, first and
last seen, log lines. For each suspect it prints the next command (tcpnorm
probe DOMAIN, or the capture to take for tcpnorm diagnose). It names no
fault class and proposes no policy: a log cannot tell them apart.

Lines it does not understand are counted, never an error.

Exit status: 0 the logs were read (with suspects or without: the report
says which), 1 a file could not be read, 2 usage error.
`

// runSuspects is `tcpnorm suspects FILE...`.
func runSuspects(args []string, stdin io.Reader, stdout, stderr io.Writer, now time.Time) int {
	fs := flag.NewFlagSet("suspects", flag.ContinueOnError)
	since := fs.Duration("since", 0, "read only lines newer than `DURATION` ago, e.g. 72h")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	maxMsgs := fs.Int("max-messages", suspects.DefaultMaxMessages, "messages whose state is kept at once (memory bound)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), suspectsUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	// Flags may follow the file names.
	files, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(files) == 0 {
		return usageError(fs, stderr, "missing FILE (\"-\" reads standard input)")
	}
	if *since < 0 || *maxMsgs <= 0 {
		return usageError(fs, stderr, "--since and --max-messages must be positive")
	}
	a := suspects.New(suspects.Options{Now: now, Since: *since, MaxMessages: *maxMsgs})
	for _, name := range files {
		if err := readSuspects(a, name, stdin); err != nil {
			fmt.Fprintf(stderr, "tcpnorm suspects: %v\n", err)
			return 1
		}
	}
	rep := a.Report()
	var err error
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpnorm suspects: %v\n", err)
		return 1
	}
	return 0
}

func readSuspects(a *suspects.Analyzer, name string, stdin io.Reader) error {
	if name == "-" {
		if err := a.Read(stdin, "-"); err != nil {
			return fmt.Errorf("standard input: %w", err)
		}
		return nil
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory", name)
	}
	if err := a.Read(f, name); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
