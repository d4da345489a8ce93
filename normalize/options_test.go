package normalize

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOptionIter(t *testing.T) {
	tests := []struct {
		name      string
		opts      []byte
		kinds     []uint8
		malformed bool
	}{
		{name: "empty", opts: nil},
		{name: "linux", opts: []byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}, kinds: []uint8{2, 4, 8, 3}},
		{name: "eol ends the list", opts: []byte{1, 3, 3, 7, 0, 0xff, 0xff}, kinds: []uint8{3}},
		{name: "nops only", opts: []byte{1, 1, 1, 1}},
		{name: "unknown kind any length", opts: []byte{254, 6, 0, 0, 0, 0}, kinds: []uint8{254}},
		{name: "zero length", opts: []byte{254, 0, 1, 1}, malformed: true},
		{name: "length one", opts: []byte{254, 1, 1, 1}, malformed: true},
		{name: "overrun", opts: []byte{2, 4, 5, 0xb4, 254, 9, 0, 0}, kinds: []uint8{2}, malformed: true},
		{name: "no length byte", opts: []byte{1, 1, 1, 8}, malformed: true},
		{name: "mss length 3", opts: []byte{2, 3, 5, 1}, malformed: true},
		{name: "ws length 4", opts: []byte{3, 4, 5, 1}, malformed: true},
		{name: "sackok length 3", opts: []byte{4, 3, 0, 1}, malformed: true},
		{name: "ts length 8", opts: []byte{8, 8, 0, 0, 0, 1, 0, 0}, malformed: true},
		{name: "sack blocks", opts: []byte{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 16}, kinds: []uint8{5}},
		{name: "quick-start and user timeout (option-27.pcap)", opts: []byte{1, 27, 8, 0, 1, 2, 0, 0, 0, 28, 4, 0, 1, 0, 0, 0},
			kinds: []uint8{27, 28}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kinds []uint8
			it := Options(tt.opts)
			for it.Next() {
				kinds = append(kinds, it.Option().Kind)
			}
			if diff := cmp.Diff(tt.kinds, kinds); diff != "" {
				t.Errorf("kinds (-want +got):\n%s", diff)
			}
			if it.Malformed() != tt.malformed {
				t.Errorf("malformed = %v, want %v", it.Malformed(), tt.malformed)
			}
		})
	}
}

func TestAppendOption(t *testing.T) {
	tests := []struct {
		name         string
		kind         uint8
		value        []byte
		tcpdump, hex string
	}{
		{name: "eol", kind: OptEOL, tcpdump: "eol", hex: "eol"},
		{name: "nop", kind: OptNOP, tcpdump: "nop", hex: "nop"},
		{name: "mss", kind: OptMSS, value: []byte{5, 0xb4}, tcpdump: "mss 1460", hex: "mss 1460"},
		{name: "mss of 3 bytes", kind: OptMSS, value: []byte{5, 0xb4, 0}, tcpdump: "mss?", hex: "opt-2:05b400"},
		{name: "wscale", kind: OptWS, value: []byte{7}, tcpdump: "wscale 7", hex: "wscale 7"},
		{name: "wscale without value", kind: OptWS, tcpdump: "wscale?", hex: "opt-3:"},
		{name: "sackOK", kind: OptSACKOK, tcpdump: "sackOK", hex: "sackOK"},
		{name: "sackOK with a value", kind: OptSACKOK, value: []byte{1}, tcpdump: "sackOK", hex: "opt-4:01"},
		{name: "timestamps", kind: OptTS, value: []byte{0, 0, 0, 1, 0, 0, 0, 2}, tcpdump: "TS val 1 ecr 2", hex: "TS val 1 ecr 2"},
		{name: "timestamps cut short", kind: OptTS, value: []byte{0, 0, 0, 1}, tcpdump: "TS?", hex: "opt-8:00000001"},
		{name: "sack blocks", kind: OptSACK, value: []byte{0, 0, 0, 1, 0, 0, 0, 16}, tcpdump: "sack", hex: "opt-5:0000000100000010"},
		{name: "unknown", kind: 27, value: []byte{0, 1}, tcpdump: "opt-27", hex: "opt-27:0001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(AppendOption(nil, tt.kind, tt.value, OptionTcpdump)); got != tt.tcpdump {
				t.Errorf("OptionTcpdump: %q, want %q", got, tt.tcpdump)
			}
			if got := string(AppendOption(nil, tt.kind, tt.value, OptionBytes)); got != tt.hex {
				t.Errorf("OptionBytes: %q, want %q", got, tt.hex)
			}
		})
	}
}
