//go:build linux

package lab

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpnorm/tcpnorm/normalize"
)

func TestFixPolicyText(t *testing.T) {
	got := FixPolicy(FaultPMTU, true, normalize.LogOnly).Text()
	want := `domain = "lab.test"
mx = true
ports = [25]
direction = "outbound"
mode = "log-only"
reason = "lab: pmtu on the path to mx.lab.test"
ticket = "LAB-1"

[options]
mss_max = 1220
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
}
