package suspects

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// MaxLine is the longest line read; the rest of a longer one is skipped
// and the line counted as not understood. Mail log lines are a few hundred
// bytes; a syslog relay may cut them at 8 KiB.
const MaxLine = 64 << 10

// gzipMagic starts every gzip member (RFC 1952): rotated logs are read by
// their content, whatever their name.
var gzipMagic = []byte{0x1f, 0x8b}

// Read reads the log lines of r, plain or gzip-compressed, and names them
// name in the evidence. Its errors are r's and gzip's: a line it does not
// understand is counted, not an error.
func (a *Analyzer) Read(r io.Reader, name string) error {
	a.files = append(a.files, name)
	a.file, a.lineNo = name, 0
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, err := br.Peek(2); err == nil && bytes.Equal(magic, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	lr := bufio.NewReaderSize(br, MaxLine)
	for {
		line, err := lr.ReadSlice('\n')
		long := false
		for errors.Is(err, bufio.ErrBufferFull) {
			long = true
			_, err = lr.ReadSlice('\n')
		}
		if len(line) > 0 || long {
			if long {
				a.counts.Lines++
				a.counts.LongLines++
				a.lineNo++
			} else {
				a.Line(string(line))
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
