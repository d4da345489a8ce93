package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// suspectsLog is a Postfix log in the format of Postfix's sources (see
// suspects/postfix.go): a small message passes, a large one stalls.
const suspectsLog = `Dec  7 10:00:02 mx1 postfix/qmgr[900]: 4A1B2C3D4E: from=<alice@example.org>, size=18230, nrcpt=1 (queue active)
Dec  7 10:00:03 mx1 postfix/smtp[1002]: 4A1B2C3D4E: to=<bob@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 7F00)
Dec  7 10:05:00 mx1 postfix/qmgr[900]: 5B2C3D4E5F: from=<alice@example.org>, size=2104332, nrcpt=1 (queue active)
Dec  7 10:10:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<carol@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=300, delays=0.1/0/0.5/299, dsn=4.4.2, status=deferred (conversation with mx.example.net[198.18.3.2] timed out while sending message body)
`

func TestSuspectsCommand(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(plain, []byte(suspectsLog), 0o644); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(suspectsLog))
	zw.Close()
	rotated := filepath.Join(dir, "mail.log.2") // gzip, whatever the name
	if err := os.WriteFile(rotated, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		out, err []string
	}{
		{name: "plain file", args: []string{plain}, out: []string{"4 lines read, 4 mail lines, 0 not understood", "1. example.net: 1 stalled, 1 delivered", "next      tcpnorm probe example.net"}},
		{name: "gzip by content, flags after the file", args: []string{rotated, "--json"}, out: []string{`"domain": "example.net"`, `"size_split": true`, `"next": [`}},
		{name: "standard input", args: []string{"-"}, stdin: suspectsLog, out: []string{"1. example.net"}},
		{name: "since", args: []string{"--since", "1h", plain}, out: []string{"4 older mail lines skipped", "No suspects"}},
		{name: "no suspects", args: []string{"-"}, stdin: "Dec  7 11:20:00 mx1 CRON[77]: (root) CMD (true)\n", out: []string{"no suspects"}},
		{name: "missing file", args: []string{filepath.Join(dir, "nope.log")}, code: 1, err: []string{"tcpnorm suspects: open ", "no such file"}},
		{name: "a directory", args: []string{dir}, code: 1, err: []string{"is a directory"}},
		{name: "no file", args: nil, code: 2, err: []string{`missing FILE ("-" reads standard input)`, "usage: tcpnorm suspects"}},
		{name: "bad duration", args: []string{"--since", "soon", plain}, code: 2, err: []string{"usage: tcpnorm suspects"}},
		{name: "negative duration", args: []string{"--since", "-1h", plain}, code: 2, err: []string{"must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runSuspects(tt.args, strings.NewReader(tt.stdin), &out, &errb, now)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, errb.String())
			}
			wantIn(t, "stdout", out.String(), tt.out)
			wantIn(t, "stderr", errb.String(), tt.err)
		})
	}
}
