package config

import (
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

const (
	maxQueues    = 64
	minQueueLen  = 128
	maxFlows     = 1 << 24
	maxPortValue = 65535
)

// Load reads and validates the config at path and every policy file. On error
// it returns an *Errors holding every problem found, each as
// "FILE:LINE:COL: key: message".
func Load(path string) (*Config, error) {
	errs := &Errors{}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	cfg := &Config{Path: path}
	text, err := os.ReadFile(path)
	if err != nil {
		errs.add(&Error{File: path, Msg: readErr(err)})
		return nil, errs
	}
	d, top := parseFile(path, string(text), errs)
	if d == nil {
		return nil, errs
	}
	decodeMain(cfg, top, filepath.Dir(abs))
	if cfg.PolicyDir != "" {
		cfg.Policies = loadPolicies(cfg.PolicyDir, d, errs)
	}
	errs.sort(path)
	if err := errs.errOrNil(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func readErr(err error) string {
	if pe, ok := err.(*fs.PathError); ok {
		return "cannot read: " + pe.Err.Error()
	}
	return "cannot read: " + err.Error()
}

func decodeMain(cfg *Config, top *table, dir string) {
	d := top.d
	pd := top.str("policy_dir", "policies.d")
	if pd == "" {
		d.errf("policy_dir", "must not be empty")
	} else {
		if !filepath.IsAbs(pd) {
			pd = filepath.Join(dir, pd)
		}
		cfg.PolicyDir = filepath.Clean(pd)
		if st, err := os.Stat(cfg.PolicyDir); err != nil {
			d.errf("policy_dir", "%s: %v", cfg.PolicyDir, unwrapPath(err))
			cfg.PolicyDir = ""
		} else if !st.IsDir() {
			d.errf("policy_dir", "%s is not a directory", cfg.PolicyDir)
			cfg.PolicyDir = ""
		} else if why := unsafeOwnership(st); why != "" {
			d.errf("policy_dir", "%s refused: %s", cfg.PolicyDir, why)
			cfg.PolicyDir = ""
		}
	}

	if cfg.User = top.str("user", ""); cfg.User != "" {
		if _, err := user.Lookup(cfg.User); err != nil {
			d.errf("user", "%v", err)
		}
	}

	q := top.sub("queue")
	cfg.Queue.First = uint16(q.integer("first", 0, 0, maxPortValue))
	cfg.Queue.Count = int(q.integer("count", int64(min(runtime.NumCPU(), maxQueues)), 1, maxQueues))
	// The next count queues take the later segments of stateful flows.
	if int(cfg.Queue.First)+2*cfg.Queue.Count > 65536 {
		d.errf("queue.count", "queues %d..%d (handshakes, then stateful flows): the last queue number must be at most 65535",
			cfg.Queue.First, int(cfg.Queue.First)+2*cfg.Queue.Count-1)
	}
	cfg.Queue.MaxLen = uint32(q.integer("max_len", 4096, minQueueLen, math.MaxUint32))
	cfg.Queue.FailOpen = q.boolean("fail_open", true)
	q.unknown("first", "count", "max_len", "fail_open")

	r := top.sub("rules")
	cfg.Rules.Install = r.boolean("install", true)
	cfg.Rules.Mode = r.enum("mode", "gateway", "gateway", "host")
	cfg.Rules.Mark = uint32(r.integer("mark", 0xff000000, 1, math.MaxUint32))
	if mb, err := normalize.NewMarkBits(cfg.Rules.Mark); cfg.Rules.Mark != 0 && err != nil {
		d.errf("rules.mark", "%#x: %v", cfg.Rules.Mark, err)
	} else if mb.Used()&normalize.ProbeMark != 0 {
		d.errf("rules.mark", "%#x: its lowest 8 bits (%#x) include %#x, the mark of tcpnorm probe's sockets", cfg.Rules.Mark, mb.Used(), normalize.ProbeMark)
	}
	r.unknown("install", "mode", "mark")

	n := top.sub("dns")
	if elems, ok := n.array("servers", "\"address:port\" strings"); ok {
		cfg.DNS.Servers = []string{}
		for _, e := range elems {
			s, isStr := e.v.(string)
			if !isStr {
				d.errf(e.key, "want an \"address:port\" string, got %s", typeName(e.v))
				continue
			}
			hp, err := serverAddr(s)
			if err != nil {
				d.errf(e.key, "%v", err)
				continue
			}
			cfg.DNS.Servers = append(cfg.DNS.Servers, hp)
		}
	}
	cfg.DNS.MinRefresh = n.duration("min_refresh", 30*time.Second)
	cfg.DNS.MaxRefresh = n.duration("max_refresh", time.Hour)
	if cfg.DNS.MinRefresh > cfg.DNS.MaxRefresh {
		d.errf("dns.min_refresh", "%v is more than max_refresh %v", cfg.DNS.MinRefresh, cfg.DNS.MaxRefresh)
	}
	cfg.DNS.MaxStale = n.duration("max_stale", DefaultMaxStale)
	n.unknown("servers", "min_refresh", "max_refresh", "max_stale")

	m := top.sub("metrics")
	cfg.Metrics.Listen = m.str("listen", "127.0.0.1:9464")
	if cfg.Metrics.Listen != "" {
		if err := checkListen(cfg.Metrics.Listen); err != nil {
			d.errf("metrics.listen", "%v", err)
		}
	}
	m.unknown("listen")

	l := top.sub("log")
	cfg.Log.Level = l.enum("level", "info", "debug", "info", "warn", "error")
	cfg.Log.Format = l.enum("format", "text", "text", "json")
	l.unknown("level", "format")

	f := top.sub("flows")
	cfg.Flows.Max = int(f.integer("max", 262144, 1, maxFlows))
	cfg.Flows.IdleTimeout = f.duration("idle_timeout", 5*time.Minute)
	cfg.Flows.TSRateMax = uint32(f.integer("ts_rate_max", 1000000, 1, 1e9))
	f.unknown("max", "idle_timeout", "ts_rate_max")

	e := top.sub("evidence")
	ed := e.str("dir", DefaultEvidenceDir)
	if ed == "" {
		d.errf("evidence.dir", "must not be empty")
	} else if !filepath.IsAbs(ed) {
		ed = filepath.Join(dir, ed)
	}
	cfg.Evidence.Dir = filepath.Clean(ed)
	cfg.Evidence.MaxBytes = e.integer("max_bytes", defaultEvidenceBytes, minEvidenceBytes, maxEvidenceBytes)
	cfg.Evidence.Keep = int(e.integer("keep", 3, 0, 100))
	e.unknown("dir", "max_bytes", "keep")

	top.unknown("policy_dir", "user", "queue", "rules", "dns", "metrics", "log", "flows", "evidence")
}

// NoExpiry is the warning for a policy without expires.
const NoExpiry = "policy has no expires: a workaround should end once the path is fixed; set expires (and review it then)"

// DefaultEvidenceDir is [evidence] dir when the config leaves it out.
const DefaultEvidenceDir = "/var/lib/tcpnorm/evidence"

// Evidence file size: the default holds some 40000 handshake segments, each
// as received and as sent; the minimum leaves room for a few hundred.
const (
	defaultEvidenceBytes = 16 << 20
	minEvidenceBytes     = 64 << 10
	maxEvidenceBytes     = 1 << 40
)

func unwrapPath(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// serverAddr accepts "addr" or "addr:port" (IPv6 as "[addr]:port") and
// returns "addr:port". Names are refused: resolving the resolver would need a
// resolver.
func serverAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP address or address:port", s)
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("%q: port must be 1..65535", s)
	}
	return ap.String(), nil
}

// checkListen validates a "host:port" listen address.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \"127.0.0.1:9464\", \"[::1]:9464\"; \"\" disables)", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p > maxPortValue {
		return fmt.Errorf("%q: port %q is not 0..65535", s, port)
	}
	if host == "" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" && !a.Is6() {
			return fmt.Errorf("%q: bad address", s)
		}
		return nil
	}
	if _, err := checkDomain(host, 1); err != nil {
		return fmt.Errorf("%q: host %q is neither an IP address nor a host name", s, host)
	}
	return nil
}

// claim is one prefix a policy file lists in cidrs, for the overlap check.
type claim struct {
	file string
	pos  position
	pol  *normalize.Policy
}

// overlap reports whether two policies can both apply to one connection:
// their directions share one and their ports share one (no ports: all).
// Policies for one prefix that cannot are both kept, so one peer can have
// different options per direction or per port.
func overlap(a, b *normalize.Policy) bool {
	if a.Direction&b.Direction == 0 {
		return false
	}
	if len(a.Ports) == 0 || len(b.Ports) == 0 {
		return true
	}
	for _, p := range a.Ports {
		if b.MatchPort(p) {
			return true
		}
	}
	return false
}

func loadPolicies(dir string, main *fileDec, errs *Errors) []*PolicyFile {
	ents, err := os.ReadDir(dir)
	if err != nil {
		main.errf("policy_dir", "%s: %v", dir, unwrapPath(err))
		return nil
	}
	var pols []*PolicyFile
	claims := map[netip.Prefix][]claim{}
	for _, ent := range ents {
		name := ent.Name()
		if !strings.HasSuffix(name, ".toml") || strings.HasPrefix(name, ".") {
			continue
		}
		file := filepath.Join(dir, name)
		st, err := os.Stat(file)
		if err != nil {
			errs.add(&Error{File: file, Msg: readErr(err)})
			continue
		}
		if !st.Mode().IsRegular() {
			errs.add(&Error{File: file, Msg: "not a regular file"})
			continue
		}
		if why := unsafeOwnership(st); why != "" {
			errs.add(&Error{File: file, Msg: "refused: " + why})
			continue
		}
		text, err := os.ReadFile(file)
		if err != nil {
			errs.add(&Error{File: file, Msg: readErr(err)})
			continue
		}
		d, top := parseFile(file, string(text), errs)
		if d == nil {
			continue
		}
		pf := decodePolicy(file, strings.TrimSuffix(name, ".toml"), top)
		for i, p := range pf.CIDRs {
			key := cidrKey(top, p, i)
			clash := false
			for _, c := range claims[p] {
				if overlap(c.pol, pf.Policy) {
					d.errf(key, "%s is also claimed by %s (%s:%d:%d) for the same direction and ports; two policies may share a prefix only with disjoint direction or ports",
						p, filepath.Base(c.file), c.file, c.pos.Line, c.pos.Col)
					clash = true
					break
				}
			}
			if !clash {
				claims[p] = append(claims[p], claim{file: file, pos: d.pos.at(key), pol: pf.Policy})
			}
		}
		pols = append(pols, pf)
	}
	return pols
}

// cidrKey finds the array element key of prefix p (index i after dedup may
// differ from the element index, so look it up by value).
func cidrKey(t *table, p netip.Prefix, i int) string {
	if src, ok := t.m["cidrs"].([]any); ok {
		for j, v := range src {
			if s, ok := v.(string); ok {
				if q, err := parsePrefix(s); err == nil && q == p {
					return fmt.Sprintf("cidrs[%d]", j)
				}
			}
		}
	}
	return fmt.Sprintf("cidrs[%d]", i)
}

func decodePolicy(file, name string, top *table) *PolicyFile {
	d := top.d
	pf := &PolicyFile{File: file}
	pol := &normalize.Policy{Name: name}
	pf.Policy = pol

	if v, ok := top.get("domain"); ok {
		s, isStr := v.(string)
		if !isStr {
			d.errf("domain", "want a string, got %s", typeName(v))
		} else if dom, err := checkDomain(s, 2); err != nil {
			d.errf("domain", "%v", err)
		} else {
			pf.Domain = dom
		}
	}
	pf.MX = top.boolean("mx", false)
	pf.SPF = top.boolean("spf", false)
	if _, hasDomain := top.m["domain"]; !hasDomain {
		if pf.MX {
			d.errf("mx", "needs a domain")
		}
		if pf.SPF {
			d.errf("spf", "needs a domain")
		}
	}
	pol.Domain = pf.Domain

	seen := map[netip.Prefix]bool{}
	if elems, ok := top.array("cidrs", "prefix strings"); ok {
		for _, e := range elems {
			s, isStr := e.v.(string)
			if !isStr {
				d.errf(e.key, "want a prefix string such as \"198.18.0.0/15\", got %s", typeName(e.v))
				continue
			}
			p, err := parsePrefix(s)
			if err != nil {
				d.errf(e.key, "%v", err)
				continue
			}
			if !seen[p] {
				seen[p] = true
				pf.CIDRs = append(pf.CIDRs, p)
			}
		}
	}
	if _, hasDomain := top.m["domain"]; !hasDomain {
		if _, hasCIDRs := top.m["cidrs"]; !hasCIDRs {
			d.errs.add(&Error{File: file, Line: 1, Col: 1, Key: "domain",
				Msg: "the policy matches no address: set domain, cidrs or both"})
		}
	}

	if elems, ok := top.array("ports", "integers"); ok {
		ports := map[uint16]bool{}
		for _, e := range elems {
			n, isInt := e.v.(int64)
			if !isInt {
				d.errf(e.key, "want a port number, got %s", typeName(e.v))
				continue
			}
			if n < 1 || n > maxPortValue {
				d.errf(e.key, "port %d is outside 1..65535", n)
				continue
			}
			if !ports[uint16(n)] {
				ports[uint16(n)] = true
				pol.Ports = append(pol.Ports, uint16(n))
			}
		}
		sort.Slice(pol.Ports, func(i, j int) bool { return pol.Ports[i] < pol.Ports[j] })
	}

	// The enums' own names are the file syntax: normalize defines and
	// parses them, FormatPolicy writes them.
	pol.Direction, pol.Mode = normalize.Both, normalize.Enforce
	top.named("direction", &pol.Direction)
	top.named("mode", &pol.Mode)
	if v, ok := top.get("expires"); ok {
		pol.Expires = decodeExpires(d, v)
	}
	pol.Reason = top.str("reason", "")
	pol.Ticket = top.str("ticket", "")
	pol.Evidence = top.boolean("evidence", false)
	if pf.Probe = top.duration("probe", 0); pf.Probe != 0 {
		switch {
		case pf.Probe < MinProbeEvery:
			d.errf("probe", "%v is too often: at least %v", pf.Probe, MinProbeEvery)
		case pol.Direction == normalize.Inbound:
			d.errf("probe", "re-tests what this host sends: it needs direction \"outbound\" or \"both\"")
		}
	}

	o := top.sub("options")
	o.named("window_scale", &pol.WindowScale)
	if _, ok := o.m["window_scale_max"]; ok {
		pol.WindowScaleMax = uint8(o.integer("window_scale_max", 0, 0, 14))
		if pol.WindowScale != normalize.WSClamp {
			d.errf("options.window_scale_max", "is only used with window_scale = \"clamp\"")
		}
	} else if pol.WindowScale == normalize.WSClamp {
		d.errf("options.window_scale", "\"clamp\" needs window_scale_max (0..14): the largest shift the path honours")
	}
	o.named("timestamps", &pol.Timestamps)
	pol.StripSACKOK = o.enum("sack_permitted", "keep", "keep", "strip") == "strip"
	if v, ok := o.get("mss_max"); ok {
		n, isInt := v.(int64)
		switch {
		case !isInt:
			d.errf("options.mss_max", "want an integer, got %s", typeName(v))
		case n != 0 && (n < 88 || n > maxPortValue):
			d.errf("options.mss_max", "%d is neither 0 (leave MSS alone) nor within 88..65535", n)
		default:
			pol.MSSMax = uint16(n)
		}
	}
	pol.StripUnknown = o.enum("unknown", "keep", "keep", "strip") == "strip"
	pol.DropMalformed = o.enum("malformed", "accept", "accept", "drop") == "drop"
	pol.ClearECN = o.enum("ecn", "keep", "keep", "clear") == "clear"
	o.unknown("window_scale", "window_scale_max", "timestamps", "sack_permitted", "mss_max", "unknown", "malformed", "ecn")

	top.unknown("domain", "mx", "spf", "cidrs", "ports", "direction", "mode", "expires", "reason", "ticket", "evidence", "probe", "options")
	return pf
}

// MinProbeEvery is the shortest policy probe interval.
const MinProbeEvery = 5 * time.Second

// decodeExpires accepts a TOML offset date-time (or an RFC 3339 string).
// Local date-times are refused: the instant a policy stops must not depend on
// the time zone of the machine that reads it.
func decodeExpires(d *fileDec, v any) time.Time {
	switch x := v.(type) {
	case time.Time:
		switch x.Location().String() {
		case "datetime-local", "date-local", "time-local":
			d.errf("expires", "has no time zone; write e.g. 2026-12-31T00:00:00Z")
			return time.Time{}
		}
		return x
	case string:
		t, err := time.Parse(time.RFC3339, x)
		if err != nil {
			d.errf("expires", "%q is not an RFC 3339 date-time such as 2026-12-31T00:00:00Z", x)
			return time.Time{}
		}
		return t
	}
	d.errf("expires", "want a date-time such as 2026-12-31T00:00:00Z, got %s", typeName(v))
	return time.Time{}
}

// parsePrefix accepts "addr/len" with no host bits set, or a bare address
// (a host prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as \"198.18.0.0/15\"", s)
		}
		if a.Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped address; write %s", s, a.Unmap())
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as \"198.18.0.0/15\"", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is IPv4-mapped; write it as an IPv4 prefix", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %q?", s, m.String())
	}
	return p, nil
}

// CheckDomain validates a policy's domain name (at least two labels) and
// returns it lower-cased without a trailing dot.
func CheckDomain(s string) (string, error) { return checkDomain(s, 2) }

// checkDomain validates a host or domain name of at least minLabels labels
// and returns it lower-cased without a trailing dot.
func checkDomain(s string, minLabels int) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	if name == "" {
		return "", fmt.Errorf("%q is not a domain name", s)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("%q is an IP address, not a domain name; put it in cidrs", s)
	}
	if len(name) > 253 {
		return "", fmt.Errorf("%q is longer than 253 characters", s)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%q is not a valid domain name (empty or over-long label)", s)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return "", fmt.Errorf("%q is not a valid domain name (character %q)", s, c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("%q is not a valid domain name (label %q starts or ends with '-')", s, l)
		}
	}
	if len(labels) < minLabels {
		return "", fmt.Errorf("%q is not a fully qualified domain name", s)
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return "", fmt.Errorf("%q is not a valid domain name (numeric top-level label)", s)
	}
	return name, nil
}

// Warnings lists what check reports without failing: inbound policies that
// match only a domain's A/MX hosts, policies without expires, expiring
// within 7 days or already expired, and an empty policy directory.
func (c *Config) Warnings(now time.Time) []string {
	var ws []string
	if len(c.Policies) == 0 {
		ws = append(ws, fmt.Sprintf("%s: no policies in %s", c.Path, c.PolicyDir))
	}
	for _, pf := range c.Policies {
		p := pf.Policy
		if p.Direction == normalize.Inbound && len(pf.CIDRs) == 0 && !pf.SPF {
			ws = append(ws, pf.File+": inbound policy with neither cidrs nor spf: mail from this domain usually arrives from hosts that are neither its A nor its MX records")
		}
		if p.Expires.IsZero() {
			ws = append(ws, pf.File+": "+NoExpiry)
		} else {
			if !now.Before(p.Expires) {
				ws = append(ws, fmt.Sprintf("%s: policy expired at %s; it no longer applies", pf.File, p.Expires.UTC().Format(time.RFC3339)))
			} else if left := p.Expires.Sub(now); left <= 7*24*time.Hour {
				ws = append(ws, fmt.Sprintf("%s: policy expires in %s (%s)", pf.File, FormatLeft(left), p.Expires.UTC().Format(time.RFC3339)))
			}
		}
	}
	return ws
}
