// Command mangen renders the manual pages man/*.md to roff for the Debian
// package (make man). The pages are go-md2man markdown; their key tables,
// which README.md repeats and a test compares row for row, become tagged
// paragraphs, which man can wrap at any width (a three-column table of
// long cells cannot).
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

func main() {
	out := flag.String("out", "build/man", "output `directory`: NAME.SECTION.gz for each man/NAME.SECTION.md")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: mangen [-out DIR] PAGE.md...")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
	for _, src := range flag.Args() {
		if err := render(src, *out); err != nil {
			fmt.Fprintf(os.Stderr, "mangen: %s: %v\n", src, err)
			os.Exit(1)
		}
	}
}

func render(src, dir string) error {
	md, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	roff := md2man.Render(tablesToLists(md))
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(roff)
	if err := zw.Close(); err != nil {
		return err
	}
	name := strings.TrimSuffix(filepath.Base(src), ".md") + ".gz"
	return os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644)
}

// tablesToLists turns every "| key | default | valid values |" table into
// definition-list entries: "**key** (default: D)" and the values as the
// description.
func tablesToLists(md []byte) []byte {
	var b strings.Builder
	for _, line := range strings.Split(string(md), "\n") {
		if !strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "|---") {
			b.WriteString(line + "\n")
			continue
		}
		cells := splitRow(line)
		if len(cells) != 3 || cells[0] == "key" || strings.HasPrefix(line, "|---") {
			continue
		}
		key := strings.ReplaceAll(cells[0], "`", "**")
		fmt.Fprintf(&b, "%s (default: %s)\n:   %s\n\n", key, cells[1], cells[2])
	}
	return []byte(b.String())
}

// splitRow splits a table row on the "|" not escaped as "\|".
func splitRow(line string) []string {
	line = strings.TrimSpace(strings.Trim(strings.TrimSpace(line), "|"))
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}
