//go:build linux

package rules

import (
	"strings"
	"testing"
)

// FuzzParseSave: any text as iptables-save output gives tcpnorm's chains
// and jump counts, never a panic; a jump is counted only for an exact line
// of its own under its own table, and one more such line counts once more.
func FuzzParseSave(f *testing.F) {
	for _, s := range []Spec{
		{Mode: ModeGateway, First: 0, Count: 2, Mark: 0xff000000},
		{Mode: ModeHost, First: 7, Count: 1, Mark: 0xff00},
	} {
		rs, err := Build(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rs.Script(IPv4), uint8(0))
	}
	f.Add("*mangle\n:FORWARD ACCEPT [1:2]\n-A FORWARD -j TCPNORM-FWD\n-A FORWARD -j TCPNORM-FWD\n-A FORWARD -m mark --mark 1 -j TCPNORM-FWD\nCOMMIT\n", uint8(3))
	f.Add("*filter\n-A INPUT -j TCPNORM-SAVE\n*\n:\n: x\n-A\n", uint8(5))
	f.Fuzz(func(t *testing.T, save string, pick uint8) {
		s := parseSave(save, Known)
		total := 0
		for j, n := range s.jumps {
			if n < 0 || !strings.Contains(save, "-A "+j.From+" "+j.Rule()) {
				t.Fatalf("jump %+v counted %d times, not in the text", j, n)
			}
			total += n
		}
		if total > strings.Count(save, "\n")+1 {
			t.Fatalf("%d jumps counted in %d lines", total, strings.Count(save, "\n")+1)
		}
		j := Known[int(pick)%len(Known)]
		more := parseSave(save+"\n*"+j.Table+"\n-A "+j.From+" "+j.Rule()+"\n", Known)
		if more.jumps[j] != s.jumps[j]+1 {
			t.Fatalf("one more %+v: counted %d, want %d", j, more.jumps[j], s.jumps[j]+1)
		}
	})
}
