package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// writeTree writes tcpnorm.toml and policies.d/<name> files into a temp dir
// and returns the config path.
func writeTree(t *testing.T, main string, policies map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	pd := filepath.Join(dir, "policies.d")
	if err := os.Mkdir(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tcpnorm.toml")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, text := range policies {
		if err := os.WriteFile(filepath.Join(pd, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name     string
		main     string
		policies map[string]string
		want     []string // substrings, each of a different error line
	}{
		{
			name: "syntax error",
			main: "[queue\ncount = 2\n",
			want: []string{"tcpnorm.toml:1:7: syntax error: expected '.' or ']' to end table name"},
		},
		{
			name: "unknown key in config",
			main: "[queue]\ncoutn = 2\n",
			want: []string{`tcpnorm.toml:2:1: queue.coutn: unknown key (did you mean "count"?)`},
		},
		{
			name: "unknown table in config",
			main: "[metric]\nlisten = \"\"\n",
			want: []string{`tcpnorm.toml:1:2: metric: unknown table (did you mean "metrics"?)`},
		},
		{
			name:     "unknown key in policy",
			policies: map[string]string{"a.toml": "cidrs = [\"198.18.0.0/24\"]\n[options]\nwindow_scal = \"strip\"\n"},
			want:     []string{`a.toml:3:1: options.window_scal: unknown key (did you mean "window_scale"?)`},
		},
		{
			name:     "wrong type",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\nmx = \"yes\"\n"},
			want:     []string{`a.toml:2:1: mx: want true or false, got string "yes"`},
		},
		{
			name: "bad probe",
			policies: map[string]string{
				"a.toml": "domain = \"example.net\"\nprobe = \"1s\"\n",
				"b.toml": "domain = \"example.net\"\ndirection = \"inbound\"\nprobe = \"12h\"\n",
				"c.toml": "domain = \"example.net\"\nprobe = 12\n",
			},
			want: []string{
				`a.toml:2:1: probe: 1s is too often: at least 5s`,
				`b.toml:3:1: probe: re-tests what this host sends: it needs direction "outbound" or "both"`,
				`c.toml:2:1: probe: want a duration string such as "30s", got integer`,
			},
		},
		{
			name:     "bad enum",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\ndirection = \"in\"\n"},
			want:     []string{`a.toml:2:1: direction: "in" is not one of "outbound", "inbound" or "both"`},
		},
		{
			name:     "enums of normalize: names and types",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\nmode = 3\n[options]\nwindow_scale = \"Strip\"\ntimestamps = true\n"},
			want: []string{
				`a.toml:2:1: mode: want one of "enforce" or "log-only", got integer`,
				`a.toml:4:1: options.window_scale: "Strip" is not one of "keep", "strip" or "clamp"`,
				`a.toml:5:1: options.timestamps: want one of "keep", "strip" or "repair", got bool`,
			},
		},
		{
			name:     "bad option enum",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\n[options]\ntimestamps = \"fix\"\n"},
			want:     []string{`options.timestamps: "fix" is not one of "keep", "strip" or "repair"`},
		},
		{
			name:     "window_scale_max out of range",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\n[options]\nwindow_scale = \"clamp\"\nwindow_scale_max = 15\n"},
			want:     []string{"a.toml:4:1: options.window_scale_max: 15 is outside 0..14"},
		},
		{
			name:     "clamp without window_scale_max",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\n[options]\nwindow_scale = \"clamp\"\n"},
			want:     []string{`a.toml:3:1: options.window_scale: "clamp" needs window_scale_max`},
		},
		{
			name:     "window_scale_max without clamp",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\n[options]\nwindow_scale = \"strip\"\nwindow_scale_max = 2\n"},
			want:     []string{`options.window_scale_max: is only used with window_scale = "clamp"`},
		},
		{
			name:     "mss_max out of range",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\n[options]\nmss_max = 50\n"},
			want:     []string{"a.toml:3:1: options.mss_max: 50 is neither 0 (leave MSS alone) nor within 88..65535"},
		},
		{
			name:     "mss_max too large",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\n[options]\nmss_max = 65536\n"},
			want:     []string{"options.mss_max: 65536 is neither 0"},
		},
		{
			name:     "invalid cidr",
			policies: map[string]string{"a.toml": "cidrs = [\"198.18.0.0/24\", \"198.18.0.300/24\"]\n"},
			want:     []string{`a.toml:1:27: cidrs: "198.18.0.300/24" is not a CIDR prefix`},
		},
		{
			name:     "cidr with host bits",
			policies: map[string]string{"a.toml": "cidrs = [\n  \"198.18.0.1/24\",\n]\n"},
			want:     []string{`a.toml:2:3: cidrs: "198.18.0.1/24" has host bits set; did you mean "198.18.0.0/24"?`},
		},
		{
			name:     "port out of range",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\nports = [25, 0, 70000]\n"},
			want:     []string{"a.toml:2:14: ports: port 0 is outside 1..65535", "a.toml:2:17: ports: port 70000 is outside 1..65535"},
		},
		{
			name:     "invalid domain",
			policies: map[string]string{"a.toml": "domain = \"exa mple.net\"\n"},
			want:     []string{`a.toml:1:1: domain: "exa mple.net" is not a valid domain name`},
		},
		{
			name:     "domain is an address",
			policies: map[string]string{"a.toml": "domain = \"198.18.0.1\"\n"},
			want:     []string{"domain: \"198.18.0.1\" is an IP address"},
		},
		{
			name:     "single-label domain",
			policies: map[string]string{"a.toml": "domain = \"examplenet\"\n"},
			want:     []string{"is not a fully qualified domain name"},
		},
		{
			name: "two files claim one prefix",
			policies: map[string]string{
				"a.toml": "cidrs = [\"198.18.0.0/24\"]\n",
				"b.toml": "cidrs = [\"2001:2::/48\", \"198.18.0.0/24\"]\n",
			},
			want: []string{"b.toml:1:25: cidrs: 198.18.0.0/24 is also claimed by a.toml"},
		},
		{
			name: "same prefix, directions overlap",
			policies: map[string]string{
				"a.toml": "cidrs = [\"198.18.0.0/24\"]\ndirection = \"outbound\"\n",
				"b.toml": "cidrs = [\"198.18.0.0/24\"]\ndirection = \"both\"\nports = [25]\n",
			},
			want: []string{"b.toml:1:10: cidrs: 198.18.0.0/24 is also claimed by a.toml ("},
		},
		{
			name: "same prefix and direction, ports overlap",
			policies: map[string]string{
				"a.toml": "cidrs = [\"198.18.0.0/24\"]\nports = [25, 587]\n",
				"b.toml": "cidrs = [\"198.18.0.0/24\"]\nports = [587]\n",
			},
			want: []string{"b.toml:1:10: cidrs: 198.18.0.0/24 is also claimed by a.toml (", "for the same direction and ports"},
		},
		{
			name:     "no address",
			policies: map[string]string{"a.toml": "ports = [25]\n"},
			want:     []string{"a.toml:1:1: domain: the policy matches no address"},
		},
		{
			name:     "mx without domain",
			policies: map[string]string{"a.toml": "cidrs = [\"198.18.0.0/24\"]\nmx = true\n"},
			want:     []string{"a.toml:2:1: mx: needs a domain"},
		},
		{
			name:     "local expires",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\nexpires = 2026-12-31T00:00:00\n"},
			want:     []string{"a.toml:2:1: expires: has no time zone"},
		},
		{
			name:     "expires wrong type",
			policies: map[string]string{"a.toml": "domain = \"example.net\"\nexpires = 20261231\n"},
			want:     []string{"expires: want a date-time"},
		},
		{
			name: "bad duration",
			main: "[dns]\nmin_refresh = \"30\"\nmax_refresh = \"-1h\"\n",
			want: []string{`tcpnorm.toml:2:1: dns.min_refresh: "30" is not a duration`, `tcpnorm.toml:3:1: dns.max_refresh: "-1h" must be positive`},
		},
		{
			name: "min_refresh above max_refresh",
			main: "[dns]\nmin_refresh = \"2h\"\n",
			want: []string{"dns.min_refresh: 2h0m0s is more than max_refresh 1h0m0s"},
		},
		{
			name: "bad dns server",
			main: "[dns]\nservers = [\"198.18.0.53:53\", \"resolver.example\"]\n",
			want: []string{`tcpnorm.toml:2:30: dns.servers: "resolver.example" is not an IP address or address:port`},
		},
		{
			name: "bad listen",
			main: "[metrics]\nlisten = \"127.0.0.1\"\n",
			want: []string{`metrics.listen: "127.0.0.1" is not host:port`},
		},
		{
			name: "bad log level and format",
			main: "[log]\nlevel = \"verbose\"\nformat = \"xml\"\n",
			want: []string{`log.level: "verbose" is not one of`, `log.format: "xml" is not one of "text" or "json"`},
		},
		{
			name: "queue count",
			main: "[queue]\ncount = 0\n",
			want: []string{"queue.count: 0 is outside 1..64"},
		},
		{
			name: "queue range past 65535",
			main: "[queue]\nfirst = 65530\ncount = 8\n",
			want: []string{"tcpnorm.toml:3:1: queue.count: queues 65530..65545 (handshakes, then stateful flows)"},
		},
		{
			name: "queue max_len",
			main: "[queue]\nmax_len = 16\n",
			want: []string{"queue.max_len: 16 is outside 128.."},
		},
		{
			name: "zero mark",
			main: "[rules]\nmark = 0\n",
			want: []string{"rules.mark: 0 is outside 1..4294967295"},
		},
		{
			name: "mark with holes",
			main: "[rules]\nmark = 0xff0f0000\n",
			want: []string{"rules.mark: 0xff0f0000: mark mask bits must be contiguous"},
		},
		{
			name: "mark on the probe's bit",
			main: "[rules]\nmark = 0x00ff0000\n",
			want: []string{"rules.mark: 0xff0000: its lowest 8 bits (0xff0000) include 0x800000, the mark of tcpnorm probe's sockets"},
		},
		{
			name: "mark too narrow",
			main: "[rules]\nmark = 0x70000000\n",
			want: []string{"rules.mark: 0x70000000: mark mask needs at least 8 contiguous bits"},
		},
		{
			name: "rules mode",
			main: "[rules]\nmode = \"router\"\n",
			want: []string{`rules.mode: "router" is not one of "gateway" or "host"`},
		},
		{
			name: "flows",
			main: "[flows]\nmax = 0\nidle_timeout = 5\n",
			want: []string{"flows.max: 0 is outside", `flows.idle_timeout: want a duration string such as "30s", got integer 5`},
		},
		{
			name:     "evidence",
			main:     "[evidence]\ndir = \"\"\nmax_bytes = 1000\nkeep = -1\nsize = 3\n",
			policies: map[string]string{"a.toml": "cidrs = [\"198.18.5.0/24\"]\nevidence = \"yes\"\n"},
			want: []string{"tcpnorm.toml:2:1: evidence.dir: must not be empty", "tcpnorm.toml:3:1: evidence.max_bytes: 1000 is outside 65536..",
				"tcpnorm.toml:4:1: evidence.keep: -1 is outside 0..100", "tcpnorm.toml:5:1: evidence.size: unknown key",
				`a.toml:2:1: evidence: want true or false, got string "yes"`},
		},
		{
			name: "missing policy dir",
			main: "policy_dir = \"nope\"\n",
			want: []string{"tcpnorm.toml:1:1: policy_dir:", "no such file or directory"},
		},
		{
			name: "every error in one run",
			main: "[queue]\ncount = 99\n[log]\nlevel = \"loud\"\n",
			policies: map[string]string{
				"a.toml": "domain = \"bad_\"\nports = [0]\n",
				"b.toml": "cidrs = [\"x\"]\n[options]\necn = \"on\"\n",
			},
			want: []string{"queue.count", "log.level", "a.toml:1:1: domain", "a.toml:2:10: ports", "b.toml:1:10: cidrs", "b.toml:3:1: options.ecn"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTree(t, tc.main, tc.policies)
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want errors %q", cfg, tc.want)
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load error is %T, want *Errors: %v", err, err)
			}
			got := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("errors do not contain %q:\n%s", w, got)
				}
			}
			if len(errs.List) < len(tc.want) && tc.name == "every error in one run" {
				t.Errorf("got %d errors, want at least %d:\n%s", len(errs.List), len(tc.want), got)
			}
			for _, e := range errs.List {
				if e.File == "" || !strings.HasPrefix(e.Error(), e.File+":") {
					t.Errorf("error %q does not start with FILE:LINE:COL", e.Error())
				}
			}
		})
	}
}

func TestLoadFull(t *testing.T) {
	main := `policy_dir = "policies.d"
[queue]
first = 10
count = 2
max_len = 1024
fail_open = false
[rules]
install = false
mode = "host"
mark = 0x0000ff00
[dns]
servers = ["198.18.0.53", "[2001:2::53]:5353"]
min_refresh = "10s"
max_refresh = "10m"
max_stale = "2h"
[metrics]
listen = ""
[log]
level = "debug"
format = "json"
[flows]
max = 1000
idle_timeout = "90s"
ts_rate_max = 2000
[evidence]
dir = "evidence"
max_bytes = 1048576
keep = 5
`
	pol := `domain = "Example.NET."
mx = true
spf = true
cidrs = ["198.18.5.0/24", "2001:2:0:5::/64", "198.18.5.0/24", "198.18.7.7"]
ports = [587, 25, 465, 25]
direction = "outbound"
mode = "log-only"
expires = 2026-12-31T00:00:00Z
reason = "window scale mangled"
ticket = "NET-1"
evidence = true
probe = "12h"

[options]
window_scale = "clamp"
window_scale_max = 2
timestamps = "repair"
sack_permitted = "strip"
mss_max = 1360
unknown = "strip"
malformed = "drop"
ecn = "clear"
`
	path := writeTree(t, main, map[string]string{"example.net.toml": pol, "b.toml": "cidrs = [\"198.18.9.0/24\"]\n", "notes.txt": "ignored"})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	want := &Config{
		Path:      path,
		PolicyDir: filepath.Join(dir, "policies.d"),
		Queue:     Queue{First: 10, Count: 2, MaxLen: 1024, FailOpen: false},
		Rules:     Rules{Install: false, Mode: "host", Mark: 0x0000ff00},
		DNS:       DNS{Servers: []string{"198.18.0.53:53", "[2001:2::53]:5353"}, MinRefresh: 10 * time.Second, MaxRefresh: 10 * time.Minute, MaxStale: 2 * time.Hour},
		Metrics:   Metrics{Listen: ""},
		Log:       Log{Level: "debug", Format: "json"},
		Flows:     Flows{Max: 1000, IdleTimeout: 90 * time.Second, TSRateMax: 2000},
		Evidence:  Evidence{Dir: filepath.Join(dir, "evidence"), MaxBytes: 1 << 20, Keep: 5},
		Policies: []*PolicyFile{
			{
				File:   filepath.Join(dir, "policies.d", "b.toml"),
				CIDRs:  []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24")},
				Policy: &normalize.Policy{Name: "b", Direction: normalize.Both},
			},
			{
				File:   filepath.Join(dir, "policies.d", "example.net.toml"),
				Domain: "example.net",
				MX:     true,
				SPF:    true,
				CIDRs: []netip.Prefix{
					netip.MustParsePrefix("198.18.5.0/24"), netip.MustParsePrefix("2001:2:0:5::/64"),
					netip.MustParsePrefix("198.18.7.7/32"),
				},
				Policy: &normalize.Policy{
					Name: "example.net", Domain: "example.net", Ticket: "NET-1", Reason: "window scale mangled",
					Mode: normalize.LogOnly, Direction: normalize.Outbound, Ports: []uint16{25, 465, 587},
					Expires:     time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
					WindowScale: normalize.WSClamp, WindowScaleMax: 2, Timestamps: normalize.TSRepair,
					StripSACKOK: true, MSSMax: 1360, StripUnknown: true, DropMalformed: true, ClearECN: true,
					Evidence: true,
				},
				Probe: 12 * time.Hour,
			},
		},
	}
	opt := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
	if diff := cmp.Diff(want, cfg, opt, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
}

func TestLoadDefaults(t *testing.T) {
	path := writeTree(t, "", nil)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:      path,
		PolicyDir: filepath.Join(filepath.Dir(path), "policies.d"),
		Queue:     Queue{First: 0, Count: min(runtime.NumCPU(), 64), MaxLen: 4096, FailOpen: true},
		Rules:     Rules{Install: true, Mode: "gateway", Mark: 0xff000000},
		DNS:       DNS{MinRefresh: 30 * time.Second, MaxRefresh: time.Hour, MaxStale: DefaultMaxStale},
		Metrics:   Metrics{Listen: "127.0.0.1:9464"},
		Log:       Log{Level: "info", Format: "text"},
		Flows:     Flows{Max: 262144, IdleTimeout: 5 * time.Minute, TSRateMax: 1000000},
		Evidence:  Evidence{Dir: "/var/lib/tcpnorm/evidence", MaxBytes: 16 << 20, Keep: 3},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if ws := cfg.Warnings(time.Now()); len(ws) != 1 || !strings.Contains(ws[0], "no policies") {
		t.Errorf("Warnings = %q, want one about no policies", ws)
	}
}

func TestLoadOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user")
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, file string)
		want  string
	}{
		{
			name:  "world-writable",
			setup: func(t *testing.T, file string) { must(t, os.Chmod(file, 0o666)) },
			want:  "a.toml:1:1: refused: file is world-writable (mode 0666); run chmod o-w",
		},
		{
			name:  "owned by another user",
			setup: func(t *testing.T, file string) { must(t, os.Chown(file, 12345, 12345)) },
			want:  "a.toml:1:1: refused: owned by uid 12345, which is neither root nor the user running tcpnorm (uid 0)",
		},
		{
			name:  "world-writable directory",
			setup: func(t *testing.T, file string) { must(t, os.Chmod(filepath.Dir(file), 0o777)) },
			want:  "policy_dir: ",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTree(t, "", map[string]string{"a.toml": "cidrs = [\"198.18.0.0/24\"]\n"})
			tc.setup(t, filepath.Join(filepath.Dir(path), "policies.d", "a.toml"))
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWarnings(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	path := writeTree(t, "", map[string]string{
		"in.toml":      "domain = \"example.net\"\ndirection = \"inbound\"\n",
		"inspf.toml":   "domain = \"example.org\"\ndirection = \"inbound\"\nspf = true\nexpires = 2026-07-01T00:00:00Z\n",
		"soon.toml":    "cidrs = [\"198.18.1.0/24\"]\nexpires = 2026-06-04T04:00:00Z\n",
		"expired.toml": "cidrs = [\"198.18.2.0/24\"]\nexpires = 2026-05-01T00:00:00Z\n",
		"later.toml":   "cidrs = [\"198.18.3.0/24\"]\nexpires = 2026-07-01T00:00:00Z\n",
	})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.Warnings(now), "\n")
	for _, w := range []string{
		"in.toml: inbound policy with neither cidrs nor spf",
		"soon.toml: policy expires in 3d4h (2026-06-04T04:00:00Z)",
		"expired.toml: policy expired at 2026-05-01T00:00:00Z",
		"in.toml: policy has no expires: a workaround should end",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("warnings do not contain %q:\n%s", w, got)
		}
	}
	for _, no := range []string{"inspf.toml", "later.toml"} {
		if strings.Contains(got, no) {
			t.Errorf("warnings mention %s:\n%s", no, got)
		}
	}
}

func TestExamples(t *testing.T) {
	cfg, err := Load("../examples/tcpnorm.toml")
	if err != nil {
		t.Fatalf("examples/tcpnorm.toml does not load:\n%v", err)
	}
	var names []string
	for _, pf := range cfg.Policies {
		names = append(names, pf.Policy.Name)
	}
	if diff := cmp.Diff([]string{"example.net", "example.org-inbound", "example.org-outbound", "lab-timestamps"}, names); diff != "" {
		t.Errorf("example policies (-want +got):\n%s", diff)
	}
	if ws := cfg.Warnings(time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)); len(ws) != 0 {
		t.Errorf("examples warn: %q", ws)
	}
}
