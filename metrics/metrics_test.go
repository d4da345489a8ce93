package metrics

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpnorm/tcpnorm/normalize"
)

func TestParseKernelQueues(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []KernelQueue
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{
			name: "two queues",
			// The kernel's format: "%5u %6u %5u %1u %5u %5u %5u %8u %2d".
			in: "   10  18467     3 2  4096     7     2       41  1\n   11 3947172225     0 2  4096     0     0        0  1\n",
			want: []KernelQueue{
				{Queue: 10, PortID: 18467, Waiting: 3, CopyMode: 2, CopyRange: 4096, QueueDrops: 7, UserDrops: 2, IDSequence: 41},
				{Queue: 11, PortID: 3947172225, CopyMode: 2, CopyRange: 4096},
			},
		},
		{name: "short line", in: "1 2 3\n", wantErr: "3 fields"},
		{name: "not a number", in: "1 2 3 4 5 x 7 8 1\n", wantErr: "field 6"},
		{name: "queue out of range", in: "70000 2 3 4 5 6 7 8 1\n", wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKernelQueues(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseKernelQueues (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOptionActionCoversEveryChange(t *testing.T) {
	for _, c := range normalize.Changes() {
		if _, act := OptionAction(c); act == "change" {
			t.Errorf("change %v has no option/action labels", c)
		}
	}
}
