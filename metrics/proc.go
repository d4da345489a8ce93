package metrics

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// ProcQueues is where the kernel lists the queues of this network namespace.
const ProcQueues = "/proc/net/netfilter/nfnetlink_queue"

// KernelQueue is one line of /proc/net/netfilter/nfnetlink_queue.
type KernelQueue struct {
	Queue      uint16 `json:"queue"`
	PortID     uint32 `json:"port_id"` // netlink port of the bound socket
	Waiting    uint32 `json:"waiting"` // packets waiting for a verdict now
	CopyMode   uint8  `json:"copy_mode"`
	CopyRange  uint32 `json:"copy_range"`
	QueueDrops uint64 `json:"queue_dropped"` // dropped because the queue was full (with fail-open: accepted instead)
	UserDrops  uint64 `json:"user_dropped"`  // dropped because the socket buffer was full (ENOBUFS on our side)
	IDSequence uint32 `json:"id_sequence"`   // last packet id
}

// ParseKernelQueues reads the nfnetlink_queue table. Its columns are: queue
// number, peer port id, queue total, copy mode, copy range, queue dropped,
// user dropped, id sequence, and a constant 1.
func ParseKernelQueues(r io.Reader) ([]KernelQueue, error) {
	var qs []KernelQueue
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("%s line %d: %d fields, want at least 8", ProcQueues, line, len(f))
		}
		var n [8]uint64
		for i := range n {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s line %d field %d: %w", ProcQueues, line, i+1, err)
			}
			n[i] = v
		}
		if n[0] > 65535 {
			return nil, fmt.Errorf("%s line %d: queue number %d out of range", ProcQueues, line, n[0])
		}
		qs = append(qs, KernelQueue{
			Queue: uint16(n[0]), PortID: uint32(n[1]), Waiting: uint32(n[2]), CopyMode: uint8(n[3]),
			CopyRange: uint32(n[4]), QueueDrops: n[5], UserDrops: n[6], IDSequence: uint32(n[7]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", ProcQueues, err)
	}
	return qs, nil
}

// KernelCollector exports the kernel's counters of queues First..First+Count-1,
// read from Path at each scrape.
type KernelCollector struct {
	Path         string // default ProcQueues
	First        uint16
	Count        int
	waiting      *prometheus.Desc
	queueDrops   *prometheus.Desc
	userDrops    *prometheus.Desc
	enqueued     *prometheus.Desc
	bound        *prometheus.Desc
	scrapeErrors prometheus.Counter
}

// NewKernelCollector returns a collector for queues first..first+count-1.
func NewKernelCollector(path string, first uint16, count int) *KernelCollector {
	if path == "" {
		path = ProcQueues
	}
	q := []string{"queue"}
	return &KernelCollector{
		Path: path, First: first, Count: count,
		waiting:    prometheus.NewDesc("tcpnorm_kernel_queue_waiting", "Packets waiting in the kernel queue for a verdict.", q, nil),
		queueDrops: prometheus.NewDesc("tcpnorm_kernel_queue_dropped_total", "Packets the kernel could not queue because the queue was full (accepted unchanged with fail_open).", q, nil),
		userDrops:  prometheus.NewDesc("tcpnorm_kernel_queue_user_dropped_total", "Packets the kernel could not deliver to tcpnorm's socket (receive buffer full).", q, nil),
		// The kernel counts no packet a fail-open queue accepted because
		// it was full: those are the packets the queue's iptables rule
		// matched less the ones enqueued.
		enqueued: prometheus.NewDesc("tcpnorm_kernel_queue_enqueued_total",
			"Packets the kernel queued for tcpnorm since the queue was bound (its packet id sequence, 32 bits). Packets the queue's rule matched beyond these were accepted unqueued (fail_open, or no tcpnorm bound).", q, nil),
		bound: prometheus.NewDesc("tcpnorm_kernel_queue_bound", "1 if the kernel lists the queue as bound.", q, nil),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcpnorm_kernel_queue_read_errors_total",
			Help: "Failures reading " + ProcQueues + ".",
		}),
	}
}

func (c *KernelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.waiting
	ch <- c.queueDrops
	ch <- c.userDrops
	ch <- c.enqueued
	ch <- c.bound
	c.scrapeErrors.Describe(ch)
}

func (c *KernelCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.scrapeErrors.Collect(ch)
	qs, err := c.Read()
	if err != nil {
		c.scrapeErrors.Inc()
		return
	}
	byQueue := map[uint16]KernelQueue{}
	for _, q := range qs {
		byQueue[q.Queue] = q
	}
	for i := 0; i < c.Count; i++ {
		n := int(c.First) + i
		if n > 65535 {
			break
		}
		l := strconv.Itoa(n)
		q, ok := byQueue[uint16(n)]
		b := 0.0
		if ok {
			b = 1
		}
		ch <- prometheus.MustNewConstMetric(c.bound, prometheus.GaugeValue, b, l)
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(q.Waiting), l)
		ch <- prometheus.MustNewConstMetric(c.queueDrops, prometheus.CounterValue, float64(q.QueueDrops), l)
		ch <- prometheus.MustNewConstMetric(c.userDrops, prometheus.CounterValue, float64(q.UserDrops), l)
		ch <- prometheus.MustNewConstMetric(c.enqueued, prometheus.CounterValue, float64(q.IDSequence), l)
	}
}

// Read returns the kernel's table of this network namespace. A missing file
// (nfnetlink_queue not loaded yet) is an empty table.
func (c *KernelCollector) Read() ([]KernelQueue, error) {
	f, err := os.Open(c.Path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseKernelQueues(f)
}
