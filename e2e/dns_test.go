//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

const (
	// dnsFaultTTL is the TTL the lab's DNS server gives its records in the
	// DNS fault test; the daemon refreshes at most every dnsMinRefresh.
	dnsFaultTTL   = 2
	dnsMinRefresh = time.Second
	// dnsFollowWithin bounds the time from the DNS server answering new
	// addresses to the daemon applying them: the TTL, plus a query to the
	// silent server still waiting for its timeouts (2 tries of 2 s).
	dnsFollowWithin = dnsFaultTTL*time.Second + 5*time.Second
)

// TestDNSFaults: the DNS server stops answering, then answers with other
// addresses. While it is silent the policy keeps its last known addresses
// and connections to them are still normalized; once it answers, the
// policy follows the new addresses within dnsFollowWithin, and the old
// address is left alone.
func TestDNSFaults(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	d := startShortTTLDaemon(t, l, lab.FixPolicy(lab.FaultWScale, false, normalize.Enforce))
	server := []string{lab.ServerV4.String() + "/32", lab.ServerV6.String() + "/128"}
	other := []string{lab.OtherV4.String() + "/32", lab.OtherV6.String() + "/128"}
	if st := policyStatus(t, d); !slices.Equal(st.Addresses, server) {
		t.Fatalf("addresses at start %q, want %q", st.Addresses, server)
	}
	checkStripped(t, l, lab.ServerV4, true)

	l.SetDNS(lab.DNSAnswers{Silent: true, TTL: dnsFaultTTL})
	st := waitPolicy(t, d, 20*time.Second, "a DNS error", func(st policyJSON) bool { return st.DNSError != "" })
	t.Logf("DNS silent: dns_error %q, addresses %q", st.DNSError, st.Addresses)
	if !slices.Equal(st.Addresses, server) {
		t.Errorf("addresses while DNS is silent %q, want the last known %q", st.Addresses, server)
	}
	time.Sleep(3 * dnsFaultTTL * time.Second)
	checkStripped(t, l, lab.ServerV4, true)
	if st := policyStatus(t, d); !slices.Equal(st.Addresses, server) {
		t.Errorf("addresses after %ds of silent DNS %q, want the last known %q", 3*dnsFaultTTL, st.Addresses, server)
	}

	l.SetDNS(lab.DNSAnswers{V4: lab.OtherV4, V6: lab.OtherV6, TTL: dnsFaultTTL})
	changed := time.Now()
	st = waitPolicy(t, d, 30*time.Second, "the new addresses", func(st policyJSON) bool { return slices.Equal(st.Addresses, other) })
	took := time.Since(changed)
	t.Logf("DNS answering %s, %s again: policy followed in %.1fs (dns_error %q)", lab.OtherV4, lab.OtherV6, took.Seconds(), st.DNSError)
	if took > dnsFollowWithin {
		t.Errorf("the policy followed the new addresses after %s, want within %s", took, dnsFollowWithin)
	}
	checkStripped(t, l, lab.OtherV4, true)
	checkStripped(t, l, lab.ServerV4, false)
}

// startShortTTLDaemon makes the lab's DNS server give dnsFaultTTL TTLs and
// starts a daemon refreshing them as often as dnsMinRefresh, stopped when
// the test ends.
func startShortTTLDaemon(t *testing.T, l *lab.Lab, p lab.Policy) *lab.Daemon {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("no tcpnorm binary: %v", buildErr)
	}
	l.SetDNS(lab.DNSAnswers{TTL: dnsFaultTTL})
	d, err := l.StartDaemonWith(context.Background(), lab.DaemonOptions{MinRefresh: dnsMinRefresh}, tcpnormBin, t.TempDir(), []lab.Policy{p}, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemonWith: %v", err)
	}
	t.Cleanup(func() { stopDaemon(t, l, d) })
	return d
}

// policyJSON is a policy in /status.
type policyJSON struct {
	Name      string
	Addresses []string
	DNSError  string `json:"dns_error"`
}

// policyStatus returns the lab policy from the daemon's /status.
func policyStatus(t *testing.T, d *lab.Daemon) policyJSON {
	t.Helper()
	body, err := d.Get(context.Background(), "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Policies []policyJSON }
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v", err)
	}
	for _, p := range st.Policies {
		if p.Name == lab.Domain {
			slices.Sort(p.Addresses)
			return p
		}
	}
	t.Fatalf("no policy %s in /status:\n%s", lab.Domain, body)
	return policyJSON{}
}

// waitPolicy polls the lab policy's status until cond holds.
func waitPolicy(t *testing.T, d *lab.Daemon, within time.Duration, what string, cond func(policyJSON) bool) policyJSON {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := policyStatus(t, d)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s: %+v", what, within, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkStripped makes a connection to dst and checks whether the server
// received its SYN with the window-scale option stripped.
func checkStripped(t *testing.T, l *lab.Lab, dst netip.Addr, want bool) {
	t.Helper()
	r, _, sseg := transfer(t, l, lab.Transfer{Dst: dst, Size: 64 << 10, Timeout: okTimeout})
	if !r.OK {
		t.Errorf("to %s: %s", dst, r)
	}
	syn, ok := firstSYN(sseg, dst, false)
	if !ok {
		t.Fatalf("no SYN to %s reached the server", dst)
	}
	if stripped := syn.WScale < 0; stripped != want {
		t.Errorf("SYN to %s arrived [%s]: stripped %v, want %v", dst, syn.Options, stripped, want)
	}
}
