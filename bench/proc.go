//go:build linux

package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tcpnorm/tcpnorm/metrics"
)

// ParseNFQueue reads /proc/net/netfilter/nfnetlink_queue with metrics'
// parser, by queue number.
func ParseNFQueue(text string) (map[uint16]metrics.KernelQueue, error) {
	qs, err := metrics.ParseKernelQueues(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	m := make(map[uint16]metrics.KernelQueue, len(qs))
	for _, q := range qs {
		m[q.Queue] = q
	}
	return m, nil
}

// QueueDelta is what happened on the queues between two readings.
type QueueDelta struct {
	Packets  uint64            // queued
	Drops    uint64            // queue_dropped + user_dropped
	PerQueue map[uint16]uint64 // queued, by queue
}

// DiffQueues subtracts readings; a queue bound only in after counts from 0.
func DiffQueues(before, after map[uint16]metrics.KernelQueue) QueueDelta {
	d := QueueDelta{PerQueue: map[uint16]uint64{}}
	for q, a := range after {
		b := before[q]
		if b.PortID != a.PortID {
			b = metrics.KernelQueue{}
		}
		n := sub(uint64(a.IDSequence), uint64(b.IDSequence))
		d.Packets += n
		d.PerQueue[q] = n
		d.Drops += sub(a.QueueDrops, b.QueueDrops) + sub(a.UserDrops, b.UserDrops)
	}
	return d
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// ParseProcCPU returns utime+stime in seconds from the text of /proc/PID/stat.
func ParseProcCPU(text string) (float64, error) {
	// comm may hold spaces and parentheses: fields start after the last ')'.
	i := strings.LastIndexByte(text, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command field")
	}
	f := strings.Fields(text[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q stime %q", f[11], f[12])
	}
	return float64(u+s) / clockTicks, nil
}

// ProcCPU reads the CPU seconds process pid has used.
func ProcCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return ParseProcCPU(string(b))
}

// MetricSum sums every sample of metric name in Prometheus text format.
func MetricSum(text, name string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}
