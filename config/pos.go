package config

import (
	"sort"
	"strconv"
	"strings"
)

// position is where a key or array element starts in a TOML file.
type position struct{ Line, Col int }

// positions maps dotted key paths ("queue.count", "cidrs[1]") to where they
// start in a TOML document. BurntSushi/toml keeps key positions private, so
// this small scanner recovers them for semantic errors. It runs only on text
// the toml parser accepted; on anything else it still terminates and simply
// knows fewer positions.
type positions struct {
	text  string
	lines []int // byte offset of each line start
	keys  map[string]int
}

func scanPositions(text string) *positions {
	p := &positions{text: text, keys: map[string]int{}}
	p.lines = append(p.lines, 0)
	for i := 0; i < len(text); i++ {
		if text[i] == '\n' {
			p.lines = append(p.lines, i+1)
		}
	}
	p.scan()
	return p
}

// at returns the position of key, falling back to its closest parent that
// has one, then to the start of the file.
func (p *positions) at(key string) position {
	for k := key; k != ""; {
		if off, ok := p.keys[k]; ok {
			return p.pos(off)
		}
		if i := strings.LastIndexAny(k, ".["); i >= 0 {
			k = k[:i]
		} else {
			break
		}
	}
	return position{1, 1}
}

func (p *positions) pos(off int) position {
	l := sort.Search(len(p.lines), func(i int) bool { return p.lines[i] > off }) - 1
	if l < 0 {
		l = 0
	}
	return position{Line: l + 1, Col: off - p.lines[l] + 1}
}

func (p *positions) scan() {
	t := p.text
	var table string
	i := 0
	for i < len(t) {
		i = p.skipSpace(i, true)
		if i >= len(t) {
			break
		}
		switch c := t[i]; {
		case c == '[':
			j := i + 1
			if j < len(t) && t[j] == '[' {
				j++
			}
			start := j
			for j < len(t) && t[j] != ']' && t[j] != '\n' {
				j++
			}
			name, _ := parseKey(t[start:j])
			table = name
			if name != "" {
				if _, ok := p.keys[name]; !ok {
					p.keys[name] = start
				}
			}
			i = p.skipLine(j)
		default:
			start := i
			j := i
			for j < len(t) && t[j] != '=' && t[j] != '\n' {
				if t[j] == '"' || t[j] == '\'' {
					j = p.skipString(j)
					continue
				}
				j++
			}
			if j >= len(t) || t[j] != '=' {
				i = p.skipLine(j)
				continue
			}
			name, _ := parseKey(t[start:j])
			full := joinKey(table, name)
			if _, ok := p.keys[full]; !ok && name != "" {
				p.keys[full] = start
			}
			i = p.scanValue(p.skipSpace(j+1, false), full)
			i = p.skipLine(i)
		}
	}
}

// scanValue skips one value starting at i, recording the positions of array
// elements and inline-table keys under key.
func (p *positions) scanValue(i int, key string) int {
	t := p.text
	if i >= len(t) {
		return i
	}
	switch t[i] {
	case '"', '\'':
		return p.skipString(i)
	case '[':
		i++
		for n := 0; i < len(t); {
			i = p.skipSpace(i, true)
			if i >= len(t) {
				return i
			}
			switch t[i] {
			case ']':
				return i + 1
			case ',':
				i++
				continue
			}
			elem := key + "[" + strconv.Itoa(n) + "]"
			p.keys[elem] = i
			n++
			j := p.scanValue(i, elem)
			if j <= i {
				j = i + 1
			}
			i = j
		}
		return i
	case '{':
		i++
		for i < len(t) {
			i = p.skipSpace(i, false)
			if i >= len(t) {
				return i
			}
			switch t[i] {
			case '}':
				return i + 1
			case ',':
				i++
				continue
			}
			start := i
			for i < len(t) && t[i] != '=' && t[i] != '}' && t[i] != '\n' {
				if t[i] == '"' || t[i] == '\'' {
					i = p.skipString(i)
					continue
				}
				i++
			}
			if i >= len(t) || t[i] != '=' {
				if i == start {
					i++ // a newline or a stray character: step over it
				}
				continue
			}
			name, _ := parseKey(t[start:i])
			full := joinKey(key, name)
			if name != "" {
				p.keys[full] = start
			}
			j := p.scanValue(p.skipSpace(i+1, false), full)
			if j <= i {
				j = i + 1
			}
			i = j
		}
		return i
	}
	for i < len(t) && !strings.ContainsRune(",]}#\n \t\r", rune(t[i])) {
		i++
	}
	return i
}

// skipString skips a basic, literal or multi-line string starting at i.
func (p *positions) skipString(i int) int {
	t := p.text
	q := t[i]
	if strings.HasPrefix(t[i:], string([]byte{q, q, q})) {
		end := strings.Index(t[i+3:], string([]byte{q, q, q}))
		if end < 0 {
			return len(t)
		}
		j := i + 3 + end + 3
		for j < len(t) && t[j] == q { // up to two quotes may close the content
			j++
		}
		return j
	}
	j := i + 1
	for j < len(t) && t[j] != q && t[j] != '\n' {
		if q == '"' && t[j] == '\\' {
			j++
		}
		j++
	}
	if j < len(t) && t[j] == q {
		j++
	}
	return j
}

// skipSpace skips blanks, and with lines also newlines and comments.
func (p *positions) skipSpace(i int, lines bool) int {
	t := p.text
	for i < len(t) {
		switch t[i] {
		case ' ', '\t', '\r':
			i++
		case '\n':
			if !lines {
				return i
			}
			i++
		case '#':
			if !lines {
				return i
			}
			for i < len(t) && t[i] != '\n' {
				i++
			}
		default:
			return i
		}
	}
	return i
}

func (p *positions) skipLine(i int) int {
	for i < len(p.text) && p.text[i] != '\n' {
		i++
	}
	return i
}

// parseKey turns a (possibly dotted, possibly quoted) TOML key into its
// dotted form.
func parseKey(s string) (string, bool) {
	var parts []string
	s = strings.TrimSpace(s)
	for s != "" {
		var part string
		switch s[0] {
		case '"', '\'':
			end := strings.IndexByte(s[1:], s[0])
			if end < 0 {
				return "", false
			}
			part, s = s[1:1+end], s[2+end:]
		default:
			end := strings.IndexByte(s, '.')
			if end < 0 {
				end = len(s)
			}
			part, s = strings.TrimSpace(s[:end]), s[end:]
		}
		parts = append(parts, part)
		s = strings.TrimSpace(s)
		if strings.HasPrefix(s, ".") {
			s = strings.TrimSpace(s[1:])
		} else if s != "" {
			return "", false
		}
	}
	return strings.Join(parts, "."), len(parts) > 0
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	if key == "" {
		return prefix
	}
	return prefix + "." + key
}
