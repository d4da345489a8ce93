//go:build linux

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpnorm/tcpnorm/config"
)

func TestSdNotify(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{name: "path", addr: func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") }},
		{name: "abstract", addr: func(t *testing.T) string { return fmt.Sprintf("@tcpnorm-test-%d-%x", os.Getpid(), rand.Uint32()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr(t)
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			t.Setenv("NOTIFY_SOCKET", addr)
			ok, err := sdNotify("READY=1")
			if !ok || err != nil {
				t.Fatalf("sdNotify = %v, %v; want true, nil", ok, err)
			}
			ln.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, err := ln.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != "READY=1" {
				t.Errorf("received %q, want READY=1", got)
			}
		})
	}
}

func TestSdNotifyUnsetOrBad(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if ok, err := sdNotify("READY=1"); ok || err != nil {
		t.Errorf("unset: sdNotify = %v, %v; want false, nil", ok, err)
	}
	t.Setenv("NOTIFY_SOCKET", "relative/path")
	if _, err := sdNotify("READY=1"); err == nil {
		t.Error("relative path: no error")
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if _, err := sdNotify("READY=1"); err == nil {
		t.Error("no listener: no error")
	}
}

// The lab and operators wait for this exact token.
func TestReadyLine(t *testing.T) {
	tests := []struct {
		name   string
		format string
		want   string
	}{
		{name: "text", format: "text", want: " msg=ready "},
		{name: "json", format: "json", want: `"msg":"ready"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			log, err := newLogger(config.Log{Level: "info", Format: tt.format}, &b, new(slog.LevelVar))
			if err != nil {
				t.Fatal(err)
			}
			log.Info("ready", "queues", "0-1")
			if !strings.Contains(b.String(), tt.want) {
				t.Errorf("log line %q lacks %q", b.String(), tt.want)
			}
		})
	}
}

func TestNewLoggerErrors(t *testing.T) {
	tests := []struct {
		name string
		log  config.Log
		want string
	}{
		{name: "level", log: config.Log{Level: "loud", Format: "text"}, want: `log level "loud"`},
		{name: "format", log: config.Log{Level: "info", Format: "xml"}, want: `log format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newLogger(tt.log, &bytes.Buffer{}, new(slog.LevelVar))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("newLogger(%+v) = %v, want error containing %q", tt.log, err, tt.want)
			}
		})
	}
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command", wantCode: 2, wantStderr: "usage: tcpnorm"},
		{name: "unknown", args: []string{"frobnicate"}, wantCode: 2, wantStderr: `unknown command "frobnicate"`},
		{name: "version", args: []string{"version"}, wantStdout: "tcpnorm (devel) go1."},
		{name: "help", args: []string{"help"}, wantStdout: "rules [-c FILE]"},
		{name: "rules extra arg", args: []string{"rules", "x"}, wantCode: 2, wantStderr: "usage: tcpnorm rules"},
		{name: "rules missing config", args: []string{"rules", "-c", "/nonexistent/tcpnorm.toml"}, wantCode: 1, wantStderr: "/nonexistent/tcpnorm.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := dispatch(tt.args, &out, &errb)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantStdout) || !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("dispatch(%q) = %d\nstdout: %s\nstderr: %s\nwant %d, stdout containing %q, stderr containing %q",
					tt.args, code, out.String(), errb.String(), tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

func TestRulesCommand(t *testing.T) {
	path := writeConfig(t, `[queue]
first = 4
count = 1
[rules]
mode = "host"
install = false
`)
	var out, errb bytes.Buffer
	if code := dispatch([]string{"rules", "-c", path}, &out, &errb); code != 0 {
		t.Fatalf("rules: exit %d: %s", code, errb.String())
	}
	want := `# [rules] install = false: tcpnorm run installs no rules; install these yourself.
# It still creates the sets and keeps them filled, and leaves them in place on exit.
# ipset restore
create tcpnorm4-q4 hash:net family inet maxelem 1048576 -exist
create tcpnorm6-q4 hash:net family inet6 maxelem 1048576 -exist
# iptables-restore --noflush
*mangle
:TCPNORM-OUT - [0:0]
:TCPNORM-IN - [0:0]
:TCPNORM-FLOW - [0:0]
-A TCPNORM-OUT -m mark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q4 dst -j NFQUEUE --queue-num 4 --queue-bypass
-A TCPNORM-IN -m connmark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q4 src -j NFQUEUE --queue-num 4 --queue-bypass
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-FLOW -j CONNMARK --restore-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-A TCPNORM-FLOW -m conntrack --ctdir ORIGINAL -j MARK --set-xmark 0x40000000/0x40000000
-A TCPNORM-FLOW -m mark --mark 0x60000000/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-num 5 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x0/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-num 5 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x30000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5
-A TCPNORM-FLOW -m mark --mark 0x50000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5
-A TCPNORM-FLOW -m mark --mark 0x70000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x10000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5 --queue-bypass
-I OUTPUT 1 -j TCPNORM-OUT
-I INPUT 1 -j TCPNORM-IN
COMMIT
*filter
:TCPNORM-SAVE - [0:0]
-A TCPNORM-SAVE -p tcp -m tcp --tcp-flags SYN SYN -m mark ! --mark 0x0/0x3f000000 -j CONNMARK --save-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-I OUTPUT 1 -j TCPNORM-SAVE
-I INPUT 1 -j TCPNORM-SAVE
COMMIT
# ip6tables-restore --noflush
*mangle
:TCPNORM-OUT - [0:0]
:TCPNORM-IN - [0:0]
:TCPNORM-FLOW - [0:0]
-A TCPNORM-OUT -m mark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q4 dst -j NFQUEUE --queue-num 4 --queue-bypass
-A TCPNORM-IN -m connmark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q4 src -j NFQUEUE --queue-num 4 --queue-bypass
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-FLOW -j CONNMARK --restore-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-A TCPNORM-FLOW -m conntrack --ctdir ORIGINAL -j MARK --set-xmark 0x40000000/0x40000000
-A TCPNORM-FLOW -m mark --mark 0x60000000/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-num 5 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x0/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-num 5 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x30000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5
-A TCPNORM-FLOW -m mark --mark 0x50000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5
-A TCPNORM-FLOW -m mark --mark 0x70000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x10000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-num 5 --queue-bypass
-I OUTPUT 1 -j TCPNORM-OUT
-I INPUT 1 -j TCPNORM-IN
COMMIT
*filter
:TCPNORM-SAVE - [0:0]
-A TCPNORM-SAVE -p tcp -m tcp --tcp-flags SYN SYN -m mark ! --mark 0x0/0x3f000000 -j CONNMARK --save-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-I OUTPUT 1 -j TCPNORM-SAVE
-I INPUT 1 -j TCPNORM-SAVE
COMMIT
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("tcpnorm rules (-want +got):\n%s", diff)
	}
}
