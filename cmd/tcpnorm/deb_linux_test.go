package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDebianPackage builds the package as README says (make deb), installs
// it with dpkg into a throw-away root (the test machine's own system is
// not touched), and checks what an administrator gets: the binary and its
// version, the unit (systemd-analyze verify, with ExecStart pointing into
// the root), each manual page (man -l), the conffile, and the bash
// completion. Then remove keeps the configuration and the operator's
// policies, and purge leaves nothing behind.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: dpkg --root needs root")
	}
	for _, tool := range []string{"make", "dpkg", "dpkg-deb", "man", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (make test-deps installs what the tests need): %v", tool, err)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "MANWIDTH=80")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("make", "-C", "../..", "deb")
	debs, _ := filepath.Glob("../../build/tcpnorm_*.deb")
	if len(debs) != 1 {
		t.Fatalf("make deb left %d packages in build/: %v", len(debs), debs)
	}
	deb := debs[0]

	// The package's version is the binary's module version.
	info := run("dpkg-deb", "--field", deb, "Version", "Architecture", "Depends")
	bin := filepath.Join(t.TempDir(), "tcpnorm")
	if out, err := exec.Command("sh", "-c", "dpkg-deb --fsys-tarfile "+deb+" | tar -xOf - ./usr/bin/tcpnorm > "+bin+" && chmod 755 "+bin).CombinedOutput(); err != nil {
		t.Fatalf("extract: %v\n%s", err, out)
	}
	ver := strings.Fields(run(bin, "version"))[1]
	debVer := strings.NewReplacer("-", ".").Replace(strings.Replace(strings.TrimPrefix(ver, "v"), "-", "~", 1))
	if !strings.Contains(info, "Version: "+debVer+"\n") || !strings.Contains(info, "Depends: iptables, ipset") {
		t.Errorf("package fields:\n%s\nwant Version %s (from tcpnorm version %s), Depends iptables, ipset", info, debVer, ver)
	}
	if conf := run("dpkg-deb", "--info", deb, "conffiles"); strings.TrimSpace(conf) != "/etc/tcpnorm/tcpnorm.toml" {
		t.Errorf("conffiles %q, want /etc/tcpnorm/tcpnorm.toml", conf)
	}

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	// iptables and ipset are the root's dependencies, not installed there;
	// the maintainer scripts run outside it with DPKG_ROOT set.
	dpkg := func(args ...string) string {
		return run("dpkg", append([]string{"--root=" + root, "--force-depends", "--force-script-chrootless"}, args...)...)
	}
	dpkg("-i", deb)

	inst := filepath.Join(root, "usr/bin/tcpnorm")
	out := run(inst, "version")
	if head, _, _ := strings.Cut(out, "\n"); !strings.HasPrefix(head, "tcpnorm "+ver+" go1.") {
		t.Errorf("installed tcpnorm version: %q, want tcpnorm %s go1...", head, ver)
	}
	// Built from this checkout: the revision is its HEAD.
	if rev, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && !strings.Contains(out, "revision "+strings.TrimSpace(string(rev))) {
		t.Errorf("installed tcpnorm version:\n%s\nwant revision %s", out, rev)
	}
	// The unit's system user, made by the postinst in the root only.
	if pw, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || !strings.Contains(string(pw), "tcpnorm:x:") || !strings.Contains(string(pw), ":/nonexistent:/usr/sbin/nologin") {
		t.Errorf("the root's /etc/passwd (%v) has no tcpnorm system user:\n%s", err, pw)
	}
	// The shipped configuration loads: no policy yet, nothing started.
	if out, err := exec.Command(inst, "check", "-c", filepath.Join(root, "etc/tcpnorm/tcpnorm.toml")).CombinedOutput(); err != nil {
		t.Errorf("tcpnorm check of the installed configuration: %v\n%s", err, out)
	}

	// The unit: verified with ExecStart pointing into the root and the
	// manual pages (Documentation=man:...) found there. A trivial unit
	// first, so that a systemd-analyze that cannot work here is told
	// apart from a bad unit; a misspelt directive must be reported.
	unitText, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/tcpnorm.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unitText), "ExecStart=/usr/bin/tcpnorm run ") {
		t.Errorf("installed unit has no ExecStart=/usr/bin/tcpnorm run")
	}
	dir := t.TempDir()
	verify := func(name, text string) (string, error) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("systemd-analyze", "verify", p)
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"))
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := verify("trivial-check.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n"); err != nil || out != "" {
		t.Fatalf("ENVIRONMENT, not the unit: systemd-analyze verify rejects even a trivial unit here (%v):\n%s", err, out)
	}
	text := strings.ReplaceAll(string(unitText), "/usr/bin/tcpnorm", inst)
	if out, err := verify("tcpnorm.service", text); err != nil || out != "" {
		t.Errorf("systemd-analyze verify of the installed tcpnorm.service: %v\n%s", err, out)
	}
	if out, _ := verify("tcpnorm.service", text+"\n[Service]\nRestrt=always\n"); !strings.Contains(out, "Restrt") {
		t.Errorf("systemd-analyze verify does not report a misspelt directive: %q", out)
	}

	// Each manual page renders without a warning and names its subject.
	for page, want := range map[string]string{
		"usr/share/man/man8/tcpnorm.8.gz":      "tcpnorm run",
		"usr/share/man/man5/tcpnorm.toml.5.gz": "window_scale",
	} {
		cmd := exec.Command("man", "-l", "--warnings", filepath.Join(root, page))
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 || !strings.Contains(stdout.String(), want) {
			t.Errorf("man -l %s: %v, warnings:\n%s\n(%d bytes, want %q in it)", page, err, stderr.String(), stdout.Len(), want)
		}
	}
	if out, err := exec.Command("bash", "-c", "source "+filepath.Join(root, "usr/share/bash-completion/completions/tcpnorm")+" && complete -p tcpnorm").CombinedOutput(); err != nil || !strings.Contains(string(out), "_tcpnorm") {
		t.Errorf("bash completion: %v\n%s", err, out)
	}
	for _, p := range []string{"etc/tcpnorm/policies.d", "usr/share/doc/tcpnorm/examples/prometheus/tcpnorm-rules.yml", "usr/share/doc/tcpnorm/examples/grafana/tcpnorm-dashboard.json"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}

	// The operator's changes: a policy and an edited configuration.
	policy := filepath.Join(root, "etc/tcpnorm/policies.d/example.net.toml")
	if err := os.WriteFile(policy, []byte("domain = \"example.net\"\n[options]\nwindow_scale = \"strip\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "etc/tcpnorm/tcpnorm.toml")
	if err := os.WriteFile(conf, append(unitText[:0:0], "# edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg("--remove", "tcpnorm")
	for _, p := range []string{policy, conf} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("remove took the operator's %s: %v", p, err)
		}
	}
	if _, err := os.Stat(inst); err == nil {
		t.Errorf("remove left %s", inst)
	}
	dpkg("--purge", "tcpnorm")
	if after := tree(t, root); after != before {
		t.Errorf("purge left files behind:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// userDB matches the user database files under /etc and their backups.
var userDB = regexp.MustCompile(`^(\.pwd\.lock|(passwd|group|shadow|gshadow)-?)$`)

// tree lists the paths under root that are not dpkg's own database.
func tree(t *testing.T, root string) string {
	t.Helper()
	var paths []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		// dpkg's database, and the user database the postinst adds
		// the system user to (which stays, as Debian's system users do).
		if strings.HasPrefix(rel, "var/lib/dpkg") || rel == "etc" || strings.HasPrefix(rel, "etc/") && userDB.MatchString(rel[len("etc/"):]) {
			return nil
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(paths, "\n")
}
