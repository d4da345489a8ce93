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
