//go:build linux

package lab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab: needs root for network namespaces; run `make test` as root")
	}
}

func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir(netns.Dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestNewClose: a lab comes up with a working clean path and leaves nothing
// behind; a leftover of a dead process is removed by the next New.
func TestNewClose(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	const prefix = "tnlabtest"
	// A namespace as a crashed run (pid 0x7ffffffe cannot exist) leaves it.
	stale := prefix + "-2147483646-abcdef-c"
	if _, err := netns.Run(ctx, "", "ip", "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Run(ctx, "", "ip", "netns", "del", stale) })

	l, err := New(ctx, Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if got := labNamespaces(t, prefix); len(got) != 4 {
		t.Errorf("namespaces after New: %q, want the lab's 4 (stale one removed)", got)
	}
	for _, v6 := range []bool{false, true} {
		r, err := l.Transfer(ctx, Transfer{Dst: ServerAddr(v6), Size: 1 << 20, Timeout: 10 * time.Second})
		if err != nil || !r.OK {
			t.Errorf("clean path, v6=%v: %v %v", v6, r, err)
		}
	}
	for _, q := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{Domain, dns.TypeMX, "mx.lab.test."},
		{MXHost, dns.TypeA, ServerV4.String()},
		{MXHost, dns.TypeAAAA, ServerV6.String()},
	} {
		var in *dns.Msg
		err := netns.InNetns(l.Gateway, func() error {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(q.name), q.qtype)
			var err error
			in, err = dns.Exchange(m, DNSServer())
			return err
		})
		if err != nil || len(in.Answer) != 1 || !strings.Contains(in.Answer[0].String(), q.want) {
			t.Errorf("lab DNS %s %s: %v %v, want an answer with %s", q.name, dns.TypeToString[q.qtype], in, err, q.want)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := labNamespaces(t, prefix); len(got) != 0 {
		t.Errorf("namespaces after Close: %q, want none", got)
	}
}
