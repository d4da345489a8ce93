//go:build linux

package lab

import "testing"

func TestParseFault(t *testing.T) {
	for _, f := range append(append(Faults(), statefulFaults()...), FaultNone) {
		got, err := ParseFault(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFault(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
	}
	if _, err := ParseFault("bogus"); err == nil {
		t.Error("ParseFault(bogus) succeeded")
	}
}
