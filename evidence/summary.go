package evidence

import (
	"strings"
	"time"
)

// Summary is what a policy's evidence files hold.
type Summary struct {
	Files       []string
	Packets     int // packet copies
	Connections int // connections whose SYN was recorded
	Rewritten   int // connections with a segment sent rewritten
	First, Last time.Time
	// Handshake is one connection's segments, as received and as sent:
	// the newest one that was rewritten (else the newest one).
	Handshake []Packet
}

// Summarize reads files (oldest first, as Files lists them). A file that
// cannot be read is an error; a file cut short yields what it holds.
func Summarize(files []string) (Summary, error) {
	s := Summary{Files: files}
	type conn struct {
		pkts      []Packet
		rewritten bool
	}
	conns := map[string]*conn{}
	var newest, newestRewritten string
	for _, f := range files {
		pkts, err := ReadFile(f)
		if err != nil {
			return s, err
		}
		for _, p := range pkts {
			s.Packets++
			if s.First.IsZero() || p.Time.Before(s.First) {
				s.First = p.Time
			}
			if p.Time.After(s.Last) {
				s.Last = p.Time
			}
			key, kind, sent := parseComment(p.Comment)
			if key == "" {
				continue
			}
			c := conns[key]
			if c == nil || kind == "syn" && !sent && hasSYN(c.pkts) {
				// A new connection, or the same four-tuple reused.
				c = &conn{}
				conns[key] = c
				if kind == "syn" {
					s.Connections++
				}
			}
			c.pkts = append(c.pkts, p)
			if sent && strings.Contains(p.Comment, " sent: ") {
				if !c.rewritten {
					s.Rewritten++
				}
				c.rewritten = true
				newestRewritten = key
			}
			newest = key
		}
	}
	switch {
	case newestRewritten != "":
		s.Handshake = conns[newestRewritten].pkts
	case newest != "":
		s.Handshake = conns[newest].pkts
	}
	return s, nil
}

func hasSYN(pkts []Packet) bool {
	for _, p := range pkts {
		if _, kind, sent := parseComment(p.Comment); kind == "syn" && !sent {
			return true
		}
	}
	return false
}

// parseComment reads the connection ("CLIENT > SERVER"), the segment kind
// and whether it is a sent copy from a comment Record.comments wrote.
func parseComment(c string) (key, kind string, sent bool) {
	f := strings.Fields(c)
	for i := 0; i+2 < len(f); i++ {
		if f[i+1] == ">" && i >= 2 {
			return f[i] + " > " + f[i+2], f[i-2], i+3 < len(f) && strings.HasPrefix(f[i+3], "sent")
		}
	}
	return "", "", false
}
