//go:build linux

package e2e

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// setName is the lab daemon's address set of a family ([queue] first = 0).
func setName(v6 bool) string {
	if v6 {
		return "tcpnorm6-q0"
	}
	return "tcpnorm4-q0"
}

// waitInSet waits up to 10 s for addr to be in the set of the daemon in
// namespace ns.
func waitInSet(t *testing.T, ns string, v6 bool, addr netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := lab.SetMembers(context.Background(), ns, setName(v6))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(m, addr.String()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in set %s after 10s: %q", addr, setName(v6), m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queued is what the daemon has given a verdict so far.
func queued(t *testing.T, d *lab.Daemon) float64 {
	t.Helper()
	return metricValue(metrics(t, d), "tcpnorm_packets_total")
}

// stripped runs a transfer to dst and reports whether the server received
// the SYN without window scale (the lab policy strips it).
func stripped(t *testing.T, l *lab.Lab, dst netip.Addr) bool {
	t.Helper()
	r, _, sseg := transfer(t, l, lab.Transfer{Dst: dst, Size: size, Timeout: okTimeout})
	if !r.OK {
		t.Errorf("to %s: %s", dst, r)
	}
	syn, ok := firstSYN(sseg, dst, false)
	if !ok {
		t.Fatalf("no SYN to %s reached the server", dst)
	}
	return syn.WScale < 0
}

// TestOnlyPolicyPeersQueued: handshakes with a peer no policy names never
// reach the daemon's queues, while a policy peer's are normalized; a reload
// adding a peer and a DNS change moving the MX put the new addresses in
// the kernel's sets; the sets are gone once the daemon exits.
func TestOnlyPolicyPeersQueued(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			l := newLab(t, lab.FaultNone)
			d := startShortTTLDaemon(t, l, lab.FixPolicy(lab.FaultWScale, v6, normalize.Enforce))
			before := invalidCounters(t, l)
			mx, other := lab.ServerAddr(v6), lab.OtherAddr(v6)
			waitInSet(t, l.Gateway, v6, mx)

			// A peer no policy names: not queued at all, not changed.
			n0 := queued(t, d)
			if stripped(t, l, other) {
				t.Errorf("SYN to unmatched %s lost its window scale", other)
			}
			if n := queued(t, d); n != n0 {
				t.Errorf("connection to unmatched %s queued: tcpnorm_packets_total %v -> %v", other, n0, n)
			}
			// The policy peer is queued and normalized.
			if !stripped(t, l, mx) {
				t.Errorf("SYN to the MX %s: window scale not stripped", mx)
			}
			if n := queued(t, d); n < n0+2 {
				t.Errorf("connection to the MX %s: tcpnorm_packets_total %v -> %v, want its SYN and SYN-ACK", mx, n0, n)
			}

			// A reload adds a policy for the other address.
			bits := 32
			if v6 {
				bits = 128
			}
			pol := "cidrs = [\"" + netip.PrefixFrom(other, bits).String() + "\"]\nports = [25]\ndirection = \"outbound\"\n\n[options]\nwindow_scale = \"strip\"\n"
			if err := os.WriteFile(filepath.Join(d.Dir, "policies.d", "other.toml"), []byte(pol), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := d.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitInSet(t, l.Gateway, v6, other)
			if !stripped(t, l, other) {
				t.Errorf("after the reload, SYN to %s: window scale not stripped", other)
			}

			// The MX moves in DNS: its new address joins the set; the old
			// one stays through the grace period.
			moved := lab.DNSAddr(v6)
			l.SetDNS(lab.DNSAnswers{V4: lab.DNSAddr(false), V6: lab.DNSAddr(true), TTL: dnsFaultTTL})
			waitInSet(t, l.Gateway, v6, moved)
			if !stripped(t, l, moved) {
				t.Errorf("after the DNS change, SYN to the MX's new address %s: window scale not stripped", moved)
			}
			m, err := lab.SetMembers(context.Background(), l.Gateway, setName(v6))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(m, mx.String()) {
				t.Errorf("the MX's old address %s left the set before the grace period ended: %q", mx, m)
			}
			checkNoNewInvalid(t, l, before)
			waitLog(t, d, "msg=\"address sets updated\"")

			// The sets go with the rules: stopDaemon checks both are gone.
			stopDaemon(t, l, d)
		})
	}
}
