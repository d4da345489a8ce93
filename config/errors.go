package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a config or policy file, positioned at the key
// (or array element) it is about.
type Error struct {
	File string
	Line int // 1-based; 0 when the problem is about the file as a whole
	Col  int
	Key  string // dotted key, e.g. "options.window_scale"; "" for file-level problems
	Msg  string
}

// Error formats the problem as "FILE:LINE:COL: key: message".
func (e *Error) Error() string {
	line, col := e.Line, e.Col
	if line < 1 {
		line, col = 1, 1
	}
	if col < 1 {
		col = 1
	}
	if e.Key == "" {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, line, col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, line, col, e.Key, e.Msg)
}

// Errors is every problem Load found, in file then position order.
type Errors struct {
	List []*Error
}

// Error joins every problem, one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find a single *Error.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, x := range e.List {
		errs[i] = x
	}
	return errs
}

func (e *Errors) add(x *Error) { e.List = append(e.List, x) }

// sort orders the list by file, then position; the config file itself first.
func (e *Errors) sort(first string) {
	sort.SliceStable(e.List, func(i, j int) bool {
		a, b := e.List[i], e.List[j]
		if a.File != b.File {
			if a.File == first || b.File == first {
				return a.File == first
			}
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

func (e *Errors) errOrNil() error {
	if len(e.List) == 0 {
		return nil
	}
	return e
}
