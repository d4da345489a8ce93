package evidence

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParse: reading any bytes as an evidence file ends without a panic,
// and a file tcpnorm wrote reads back whole.
func FuzzParse(f *testing.F) {
	var b bytes.Buffer
	if err := writeHeader(&b, "p"); err != nil {
		f.Fatal(err)
	}
	pkt := make([]byte, 60)
	pkt[0] = 0x45
	file := appendPacket(b.Bytes(), time.Unix(1e9, 5), pkt, 60, "policy=p syn outbound 198.18.0.1:1 > 198.18.0.2:25 received")
	file = appendPacket(file, time.Unix(1e9, 6), pkt[:40], 60, "")
	f.Add(file)
	f.Add(file[:len(file)-7])
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts, _ := parse(data)
		for _, p := range pkts {
			_ = p.Line()
			parseComment(p.Comment)
		}
		if bytes.Equal(data, file) && len(pkts) != 2 {
			t.Fatalf("the written file reads as %d packets", len(pkts))
		}
	})
}
