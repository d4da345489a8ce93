//go:build linux

package diagnose

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// corpusDir holds the regression corpus (see its MANIFEST).
const corpusDir = "testdata/corpus"

// corpusPackages are the Debian packages whose test and example captures
// the corpus reads where they are installed (their licences do not let
// the files be copied here; `make test-deps` installs them).
var corpusPackages = []struct {
	pkg, glob string
}{
	{"pathspider", "/usr/lib/python3/dist-packages/pathspider/tests/data/*.pcap"},
	{"python3-dpkt", "/usr/share/doc/python3-dpkt/examples/data/*.pcap"},
	{"pcapfix", "/usr/share/doc/pcapfix/examples/*.pcap"},
	{"pktanon", "/usr/share/doc/pktanon/examples/profiles/*.pcap"},
	{"ruby-pcaprub", "/usr/share/doc/ruby-pcaprub/examples/*.pcap.gz"},
	{"python3-libtrace", "/usr/share/doc/python3-libtrace/examples/*.pcap*"},
}

// corpusFile is one capture of the regression corpus and what diagnose
// must say about it: want "" is a healthy capture (no FAULT verdict, no
// policy); otherwise the class it must name first, with a policy.
type corpusFile struct {
	path, want string
}

// corpusFiles lists the regression corpus: the committed captures of
// testdata/corpus (MANIFEST.md says what each holds) and the lab's fault
// captures, the real captures of capturesDir, the pcaps gopacket's module ships,
// and those of corpusPackages.
func corpusFiles(t *testing.T) []corpusFile {
	t.Helper()
	var files []corpusFile
	man, err := os.ReadFile(filepath.Join(corpusDir, "MANIFEST.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(man))
	for sc.Scan() {
		// | file | source | licence | expect |
		f := strings.Split(sc.Text(), "|")
		if len(f) < 6 {
			continue
		}
		name, want := strings.Trim(strings.TrimSpace(f[1]), "`"), strings.TrimSpace(f[4])
		if !strings.HasSuffix(name, ".pcap") {
			continue
		}
		if want == "healthy" {
			want = ""
		}
		listed[name] = true
		files = append(files, corpusFile{filepath.Join(corpusDir, name), want})
	}
	onDisk, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap"))
	for _, p := range onDisk {
		if !listed[filepath.Base(p)] {
			t.Errorf("%s is not listed in MANIFEST.md", p)
		}
	}
	for _, tc := range labCases {
		files = append(files, corpusFile{labFile(tc.name), string(tc.want)})
	}
	for _, tc := range labExtra {
		files = append(files, corpusFile{filepath.Join("testdata", tc.file), string(tc.want)})
	}
	real, _ := filepath.Glob(filepath.Join(capturesDir, "*.pcap"))
	if len(real) == 0 {
		t.Errorf("no captures in %s", capturesDir)
	}
	for _, p := range real {
		files = append(files, corpusFile{p, ""})
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/gopacket").Output()
	if err != nil {
		t.Fatalf("go list gopacket: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	for _, g := range []string{"pcap/*.pcap", "pcapgo/tests/*/*.pcapng"} {
		m, _ := filepath.Glob(filepath.Join(dir, g))
		if len(m) == 0 {
			t.Errorf("no %s in %s", g, dir)
		}
		for _, p := range m {
			files = append(files, corpusFile{p, ""})
		}
	}
	for _, pk := range corpusPackages {
		m, _ := filepath.Glob(pk.glob)
		if len(m) == 0 {
			t.Errorf("no %s: install Debian package %s (make test-deps does)", pk.glob, pk.pkg)
		}
		for _, p := range m {
			files = append(files, corpusFile{p, ""})
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files
}

// TestCorpus: no FAULT verdict on a healthy real capture, and each fault
// capture's class named first with a policy. Files that are not captures
// (a damaged example, a non-pcap format) must give an error, not a panic.
func TestCorpus(t *testing.T) {
	files := corpusFiles(t)
	var healthy, faults, falseAlarms, named, unreadable int
	for _, cf := range files {
		data, err := os.ReadFile(cf.path)
		if err != nil {
			t.Errorf("%s: %v", cf.path, err)
			continue
		}
		rep, err := DiagnoseBytes(data, Options{Now: testNow})
		if err != nil {
			if cf.want != "" {
				t.Errorf("%s: %v", cf.path, err)
			}
			unreadable++
			continue
		}
		for _, p := range rep.Policies {
			checkPolicy(t, p)
		}
		checkSameTwice(t, cf.path, data, rep)
		if optional, ok := strings.CutSuffix(cf.want, "?"); ok {
			faults++
			first := len(rep.Findings) > 0 && string(rep.Findings[0].Class) == optional
			switch {
			case rep.Verdict == VerdictOptionFault && first:
				named++
			case len(rep.Policies) > 0:
				t.Errorf("%s: verdict %q findings %+v, want %s first or no policy", cf.path, rep.Verdict, summarize(rep), optional)
			}
			continue
		}
		if cf.want == "" {
			healthy++
			if rep.Verdict == VerdictOptionFault || len(rep.Policies) > 0 {
				falseAlarms++
				t.Errorf("%s: healthy capture diagnosed %q: %+v", cf.path, rep.Verdict, summarize(rep))
			}
			continue
		}
		faults++
		if rep.Verdict == VerdictOptionFault && len(rep.Findings) > 0 && string(rep.Findings[0].Class) == cf.want {
			named++
		} else {
			t.Errorf("%s: verdict %q findings %+v, want %s first", cf.path, rep.Verdict, summarize(rep), cf.want)
		}
	}
	t.Logf("corpus: %d captures: %d healthy with %d false alarms, %d lab faults with %d named first, %d unreadable (not captures)",
		len(files), healthy, falseAlarms, faults, named, unreadable)
}

// checkSameTwice: a second reading of the same capture renders byte for
// byte what the first did, in JSON and in text (a report pasted into a
// ticket must not change when it is made again).
func checkSameTwice(t *testing.T, path string, data []byte, first *Report) {
	t.Helper()
	again, err := DiagnoseBytes(data, Options{Now: testNow})
	if err != nil {
		t.Errorf("%s: second reading: %v", path, err)
		return
	}
	for _, r := range []struct {
		form  string
		write func(*Report, io.Writer) error
	}{
		{"JSON", (*Report).WriteJSON},
		{"text", func(r *Report, w io.Writer) error { return r.WriteText(w, path) }},
	} {
		var a, b bytes.Buffer
		if err := r.write(first, &a); err != nil {
			t.Errorf("%s: %s: %v", path, r.form, err)
			continue
		}
		r.write(again, &b)
		if a.String() != b.String() {
			t.Errorf("%s: the %s of two readings differ:\n%s\n---\n%s", path, r.form, a.String(), b.String())
		}
	}
}

// TestProposedPoliciesLoad: every policy diagnose proposes for a capture of
// the corpus (the committed ones, the lab's, the shared real ones and those
// read in place), with the peer named by its address or by a domain, loads
// as tcpnorm check loads it, all of one capture's files together.
func TestProposedPoliciesLoad(t *testing.T) {
	var proposed int
	for _, cf := range corpusFiles(t) {
		data, err := os.ReadFile(cf.path)
		if err != nil {
			t.Errorf("%s: %v", cf.path, err)
			continue
		}
		for _, domain := range []string{"", "example.net"} {
			rep, err := DiagnoseBytes(data, Options{Now: testNow, Domain: domain})
			if err != nil {
				break // not a capture: TestCorpus says which must be
			}
			files := map[string]bool{}
			for _, p := range rep.Policies {
				if files[p.File] {
					t.Errorf("%s (domain %q): two policies named %s", cf.path, domain, p.File)
				}
				files[p.File] = true
			}
			if err := loadPolicies(t, rep.Policies); err != nil {
				t.Errorf("%s (domain %q): proposed policies do not load: %v", cf.path, domain, err)
			}
			proposed += len(rep.Policies)
		}
	}
	if proposed == 0 {
		t.Error("no capture got a policy: nothing was checked")
	}
	t.Logf("%d policies loaded", proposed)
}
