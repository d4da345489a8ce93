package config

import (
	"encoding"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// fileDec decodes one TOML file strictly: every value is taken from the
// generic map toml produces, so a wrong type or bad value in one key does not
// hide the problems in the others, and every key not consumed is reported.
type fileDec struct {
	file string
	pos  *positions
	errs *Errors
}

// parseFile parses text; a syntax error is added to errs and nil returned.
func parseFile(file, text string, errs *Errors) (*fileDec, *table) {
	var m map[string]any
	if _, err := toml.Decode(text, &m); err != nil {
		e := &Error{File: file, Msg: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Col, e.Msg = pe.Position.Line, pe.Position.Col, "syntax error: "+pe.Message
			// toml's own line/column can point past the offending byte;
			// its byte offset is exact.
			if st := pe.Position.Start; st > 0 && st <= len(text) {
				p := scanPositions(text[:st] + "\n").pos(st)
				e.Line, e.Col = p.Line, p.Col
			}
			if pe.LastKey != "" {
				e.Key = pe.LastKey
			}
		}
		errs.add(e)
		return nil, nil
	}
	d := &fileDec{file: file, pos: scanPositions(text), errs: errs}
	return d, &table{d: d, m: m, used: map[string]bool{}}
}

func (d *fileDec) errf(key, format string, args ...any) {
	p := d.pos.at(key)
	d.errs.add(&Error{File: d.file, Line: p.Line, Col: p.Col, Key: displayKey(key), Msg: fmt.Sprintf(format, args...)})
}

// displayKey drops array indexes: "cidrs[2]" is reported as key "cidrs",
// positioned at the element.
func displayKey(key string) string {
	if i := strings.IndexByte(key, '['); i >= 0 {
		return key[:i]
	}
	return key
}

// table is one TOML table being consumed.
type table struct {
	d      *fileDec
	prefix string
	m      map[string]any
	used   map[string]bool
}

func (t *table) key(k string) string { return joinKey(t.prefix, k) }

func (t *table) get(k string) (any, bool) {
	v, ok := t.m[k]
	if ok {
		t.used[k] = true
	}
	return v, ok
}

// sub returns the sub-table k (empty if absent).
func (t *table) sub(k string) *table {
	s := &table{d: t.d, prefix: t.key(k), m: map[string]any{}, used: map[string]bool{}}
	v, ok := t.get(k)
	if !ok {
		return s
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		t.d.errf(t.key(k), "want a table [%s], got %s", t.key(k), typeName(v))
		return s
	}
	s.m = m
	return s
}

func (t *table) str(k, def string) string {
	v, ok := t.get(k)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		t.d.errf(t.key(k), "want a string, got %s", typeName(v))
		return def
	}
	return s
}

func (t *table) boolean(k string, def bool) bool {
	v, ok := t.get(k)
	if !ok {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		t.d.errf(t.key(k), "want true or false, got %s", typeName(v))
		return def
	}
	return b
}

// integer returns k, which must be within min..max.
func (t *table) integer(k string, def, min, max int64) int64 {
	v, ok := t.get(k)
	if !ok {
		return def
	}
	n, isInt := v.(int64)
	if !isInt {
		t.d.errf(t.key(k), "want an integer, got %s", typeName(v))
		return def
	}
	if n < min || n > max {
		t.d.errf(t.key(k), "%d is outside %d..%d", n, min, max)
		return def
	}
	return n
}

// enum returns k, which must be one of allowed.
func (t *table) enum(k, def string, allowed ...string) string {
	v, ok := t.get(k)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		t.d.errf(t.key(k), "want one of %s, got %s", quoteList(allowed), typeName(v))
		return def
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	t.d.errf(t.key(k), "%q is not one of %s", s, quoteList(allowed))
	return def
}

// named decodes k into v with v's own UnmarshalText: normalize's enums,
// whose names are the file syntax. An absent key leaves v as it is.
func (t *table) named(k string, v encoding.TextUnmarshaler) {
	raw, ok := t.get(k)
	if !ok {
		return
	}
	s, isStr := raw.(string)
	err := v.UnmarshalText([]byte(s))
	var ee *normalize.EnumError
	switch {
	case !isStr && errors.As(err, &ee):
		t.d.errf(t.key(k), "want one of %s, got %s", quoteList(ee.Valid), typeName(raw))
	case errors.As(err, &ee):
		t.d.errf(t.key(k), "%q is not one of %s", s, quoteList(ee.Valid))
	case err != nil:
		t.d.errf(t.key(k), "%v", err)
	}
}

// duration returns k, a Go duration string such as "30s", which must be > 0.
func (t *table) duration(k string, def time.Duration) time.Duration {
	v, ok := t.get(k)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		t.d.errf(t.key(k), "want a duration string such as \"30s\", got %s", typeName(v))
		return def
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		t.d.errf(t.key(k), "%q is not a duration (use e.g. \"30s\", \"5m\", \"1h\")", s)
		return def
	}
	if dur <= 0 {
		t.d.errf(t.key(k), "%q must be positive", s)
		return def
	}
	return dur
}

// elem is one array element with the key that positions it ("cidrs[1]").
type elem struct {
	key string
	v   any
}

// array returns k's elements; what names the wanted element type.
func (t *table) array(k, what string) ([]elem, bool) {
	v, ok := t.get(k)
	if !ok {
		return nil, false
	}
	var vs []any
	switch a := v.(type) {
	case []any:
		vs = a
	case []map[string]any:
		t.d.errf(t.key(k), "want an array of %s, got an array of tables", what)
		return nil, false
	default:
		t.d.errf(t.key(k), "want an array of %s, got %s", what, typeName(v))
		return nil, false
	}
	out := make([]elem, len(vs))
	for i, x := range vs {
		out[i] = elem{key: fmt.Sprintf("%s[%d]", t.key(k), i), v: x}
	}
	return out, true
}

// unknown reports every key of t that was not consumed, suggesting the
// closest known key.
func (t *table) unknown(known ...string) {
	var ks []string
	for k := range t.m {
		if !t.used[k] {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	for _, k := range ks {
		msg := "unknown key"
		if _, isTable := t.m[k].(map[string]any); isTable {
			msg = "unknown table"
		}
		if s := closest(k, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if len(known) > 0 {
			msg += " (known: " + strings.Join(known, ", ") + ")"
		}
		t.d.errf(t.key(k), "%s", msg)
	}
}

func typeName(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return fmt.Sprintf("float %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// closest returns the known key within edit distance 2 of k, if any.
func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
