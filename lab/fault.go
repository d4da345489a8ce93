//go:build linux

package lab

import (
	"fmt"
	"strings"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Fault is a path fault the path box injects.
type Fault uint8

const (
	FaultNone        Fault = iota
	FaultSYNTS             // firewall dropping SYNs that carry timestamps
	FaultWScale            // router raising the window-scale shift in SYN-ACKs to 14
	FaultTSScramble        // box moving some of the server's TSvals into the past
	FaultPMTU              // smaller MTU toward the server, ICMP too-big filtered
	FaultWScaleCap         // box honouring window-scale shifts only up to a cap
	FaultTSScramble2       // box moving some of the server's TSvals into the past, some into the future
	numFaults
)

var faultNames = [numFaults]string{"none", "syn-ts", "wscale", "ts-scramble", "pmtu", "wscale-cap", "ts-scramble2"}

func (f Fault) String() string {
	if f < numFaults {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", f)
}

// Faults lists the fault classes a stateless policy fixes (not FaultNone).
func Faults() []Fault {
	return []Fault{FaultSYNTS, FaultWScale, FaultTSScramble, FaultPMTU}
}

// statefulFaults lists the faults only the stateful actions fix without
// giving up the option: window_scale = "clamp" and timestamps = "repair".
func statefulFaults() []Fault {
	return []Fault{FaultWScaleCap, FaultTSScramble2}
}

// FaultNames are the names of Faults and of the faults only the stateful
// actions fix (statefulFaults), in that order: what `tcpnorm lab --fault`
// takes.
func FaultNames() []string {
	var ns []string
	for _, f := range append(Faults(), statefulFaults()...) {
		ns = append(ns, f.String())
	}
	return ns
}

// ParseFault parses a fault name as String prints it.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if s == n {
			return Fault(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fault %q (want one of %s)", s, strings.Join(faultNames[1:], ", "))
}

// describe says what the fault does, for people.
func (f Fault) describe() string {
	switch f {
	case FaultSYNTS:
		return "the path drops every SYN that carries the TCP timestamps option (a SYN-option firewall)"
	case FaultWScale:
		return fmt.Sprintf("the path rewrites the window-scale shift in the server's SYN-ACK to %d; the server really scales by its own shift and has a %d-byte receive buffer, so the client over-reads every window and overruns it", wscaleFaultShift, wscaleServerRmem)
	case FaultTSScramble:
		return "the path moves the TSval of some of the server's data segments into the past; the client's PAWS check silently discards them, again and again"
	case FaultPMTU:
		return fmt.Sprintf("the path's link to the server has MTU %d and the path filters ICMP fragmentation-needed / packet-too-big: full-size segments vanish", blackholeMT)
	case FaultWScaleCap:
		return "the path honours window-scale shifts only up to a cap (default 2): it computes every window as field << min(shift, cap), far below the real one, and drops the data segments beyond the window it computed"
	case FaultTSScramble2:
		return "the path moves the TSval of some of the server's data segments about 17 minutes into the past and of others as far into the future; the client's PAWS check discards the old ones, and after a future one every correct one"
	}
	return "no fault: a clean path"
}

// Direction is the transfer direction that shows the fault.
func (f Fault) Direction() Direction {
	switch f {
	case FaultTSScramble, FaultTSScramble2:
		return Download
	}
	return Upload
}

// FixOptions are the options of the policy that fixes the fault (the
// option fields of a normalize.Policy; config.FormatPolicy writes them).
func (f Fault) FixOptions(v6 bool) normalize.Policy {
	switch f {
	case FaultSYNTS, FaultTSScramble:
		return normalize.Policy{Timestamps: normalize.TSStrip}
	case FaultWScale:
		return normalize.Policy{WindowScale: normalize.WSStrip}
	case FaultPMTU:
		return normalize.Policy{MSSMax: uint16(PMTUMSS(v6))}
	case FaultWScaleCap:
		return ClampOptions(defaultWScaleCap)
	case FaultTSScramble2:
		return normalize.Policy{Timestamps: normalize.TSRepair}
	}
	return normalize.Policy{}
}

// ClampOptions are the options that fix a wscale-cap path honouring
// shifts up to k without giving up window scaling.
func ClampOptions(k int) normalize.Policy {
	return normalize.Policy{WindowScale: normalize.WSClamp, WindowScaleMax: uint8(k)}
}

// PMTUMSS is the largest MSS that fits the black-holed path.
func PMTUMSS(v6 bool) int {
	if v6 {
		return blackholeMT - 60
	}
	return blackholeMT - 40
}
