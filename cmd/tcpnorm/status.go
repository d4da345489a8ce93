package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/status"
)

const statusHelp = `Asks the running daemon (at the config's [metrics] listen) what it is doing
and prints, per policy: mode, direction, ports, actions, addresses and when
they were last resolved, connections matched and when last, rewrites per
option and action (would-rewrite for log-only), time to expiry and the
evidence file; per queue: packets, verdict latency (p50, p99 of the sampled
histogram), the kernel's queue and socket drops. Exit status 1 when the
daemon cannot be reached or [metrics] listen is "".`

// runStatus is `tcpnorm status [-c FILE] [--json]`.
func runStatus(args []string, stdout, stderr io.Writer, client *http.Client) int {
	var asJSON *bool
	c := command{name: "status", help: statusHelp, flags: func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the daemon's /status document as it is")
	}}
	path, _, code, ok := c.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	doc, err := fetchStatus(path, client)
	if err != nil {
		fmt.Fprintln(stderr, "tcpnorm status:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(doc)
		return 0
	}
	status.Write(stdout, doc)
	return 0
}

// fetchStatus reads the config at path for [metrics] listen and gets the
// daemon's /status there.
func fetchStatus(path string, client *http.Client) (*status.Document, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return status.Fetch(ctx, client, cfg.Metrics.Listen)
}
