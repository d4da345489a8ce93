//go:build linux

package netns

import "testing"

func TestParseCTStat(t *testing.T) {
	const text = `entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000004  00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
00000004  00000000 00000000 00000000 0000000a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
`
	got, err := parseCTStat(text, "invalid")
	if err != nil || got != 13 {
		t.Errorf("parseCTStat(invalid) = %d, %v; want 13, nil", got, err)
	}
	for _, tt := range []struct{ name, text, col string }{
		{name: "empty", text: "", col: "invalid"},
		{name: "no column", text: text, col: "nosuch"},
		{name: "short line", text: "a invalid\n1\n", col: "invalid"},
		{name: "not hex", text: "invalid\nzz\n", col: "invalid"},
	} {
		if _, err := parseCTStat(tt.text, tt.col); err == nil {
			t.Errorf("%s: parseCTStat succeeded, want error", tt.name)
		}
	}
}

func TestParseSNMP(t *testing.T) {
	const text = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 100
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 5 3 0 0 1 900 800 2 0 1 7
Udp: InDatagrams NoPorts
Udp: 4 0
`
	if got, err := ParseSNMP(text, "Tcp", "InCsumErrors"); err != nil || got != 7 {
		t.Errorf("ParseSNMP(Tcp InCsumErrors) = %d, %v; want 7, nil", got, err)
	}
	for _, tt := range []struct{ name, text, col string }{
		{name: "no such column", text: text, col: "Nope"},
		{name: "no values", text: "Tcp: InCsumErrors\n", col: "InCsumErrors"},
		{name: "not a number", text: "Tcp: InCsumErrors\nTcp: x\n", col: "InCsumErrors"},
		{name: "empty", text: "", col: "InCsumErrors"},
	} {
		if _, err := ParseSNMP(tt.text, "Tcp", tt.col); err == nil {
			t.Errorf("%s: parseSNMP succeeded, want error", tt.name)
		}
	}
}
