package metrics

import (
	"fmt"
	"strings"
	"testing"
)

// FuzzParseKernelQueues: any text as /proc/net/netfilter/nfnetlink_queue
// gives queues or an error, never a panic; the queues it gives, printed
// back in the kernel's format, parse to the same queues.
func FuzzParseKernelQueues(f *testing.F) {
	f.Add("    0  12345     0 2 65535     0     0        7  1\n    1 4294967295  3 2 65535    17    4 4294967295  1\n")
	f.Add("65535 1 2 3 4 5 6 7\n\n  \t\n")
	f.Add("65536 1 2 3 4 5 6 7 1\n")
	f.Add("0 1 2 3 4 5 6\n")
	f.Add("0 -1 2 3 4 5 6 7 1\n0 1 2 3 4 18446744073709551615 6 7 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		qs, err := ParseKernelQueues(strings.NewReader(text))
		if err != nil {
			return
		}
		var b strings.Builder
		for _, q := range qs {
			fmt.Fprintf(&b, "%5d %6d %5d %1d %5d %5d %5d %8d %2d\n",
				q.Queue, q.PortID, q.Waiting, q.CopyMode, q.CopyRange, q.QueueDrops, q.UserDrops, q.IDSequence, 1)
		}
		again, err := ParseKernelQueues(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("printed back %q: %v", b.String(), err)
		}
		if len(again) != len(qs) {
			t.Fatalf("printed back: %d queues, want %d", len(again), len(qs))
		}
		for i := range qs {
			if again[i] != qs[i] {
				t.Fatalf("queue %d printed back: %+v, want %+v", i, again[i], qs[i])
			}
		}
	})
}
