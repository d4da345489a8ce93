// Package textfmt formats what tcpnorm's reports print for people: filled
// paragraphs and byte counts. One place for each, so diagnose, probe and
// suspects read alike.
package textfmt

import (
	"fmt"
	"strings"
)

// Wrap fills text to width, the first line after first, the rest after
// rest; the result ends in a newline.
func Wrap(first, rest, text string, width int) string {
	var b strings.Builder
	line := first
	n := 0
	for _, w := range strings.Fields(text) {
		if n > 0 && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line, n = rest, 0
		}
		if n > 0 {
			line += " "
		}
		line += w
		n++
	}
	b.WriteString(line + "\n")
	return b.String()
}

// Bytes prints a byte count in binary units: 512 B, 17.8 KiB, 2.0 MiB.
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
