package diagnose

import (
	"testing"
	"time"
)

// benchCapture is about 100k packets: healthy and lossy uploads and
// downloads on many interleaved connections.
func benchCapture(b *testing.B) ([]byte, int) {
	var sims []*sim
	var pkts [][]wirePkt
	n := 0
	for i := 0; n < 100_000; i++ {
		s := newSim()
		s.upload, s.atClient, s.cliPort = i%2 == 0, i%3 != 0, uint16(20000+i)
		if i%4 == 0 {
			s.drop = randomDrop(0.02, int64(i))
		}
		p := s.run()
		for j := range p {
			p[j].t += time.Duration(i) * 50 * time.Millisecond
		}
		sims, pkts = append(sims, s), append(pkts, p)
		n += len(p)
	}
	return mergeCaptures(b, sims, pkts), n
}

func BenchmarkDiagnose(b *testing.B) {
	data, n := benchCapture(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := DiagnoseBytes(data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// TestSegmentAllocs: the per-packet path allocates nothing once a
// connection exists.
func TestSegmentAllocs(t *testing.T) {
	s := newSim()
	s.upload, s.atClient = true, true
	data := pcapBytes(t, s, s.run(), writeOpts{})
	cp, err := openCapture(bytesReader(data))
	if err != nil {
		t.Fatal(err)
	}
	a := newAnalyzer(Options{})
	var frames [][]byte
	for {
		d, _, _, err := cp.next(0)
		if err != nil {
			break
		}
		frames = append(frames, append([]byte(nil), d...))
	}
	var seg segment
	for _, f := range frames[:10] {
		ip, hdr := linkPayload(linkEthernet, f)
		if decode(ip, len(f)-hdr, &seg) == kindTCP {
			a.segment(&seg)
		}
	}
	i := 10
	allocs := testing.AllocsPerRun(200, func() {
		f := frames[10+i%(len(frames)-10)]
		i++
		ip, hdr := linkPayload(linkEthernet, f)
		if decode(ip, len(f)-hdr, &seg) == kindTCP {
			a.segment(&seg)
		}
	})
	if allocs > 0.1 {
		t.Errorf("%.2f allocations per packet, want 0", allocs)
	}
}
