//go:build linux

package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// UnpackDebs unpacks Debian packages into root without installing them:
// a program whose package conflicts with one installed (every MTA
// provides mail-transport-agent) runs from there. Each package's .deb is
// taken from cache, or fetched into it with apt-get download (after an
// apt-get update when the first try fails); the caller keeps cache out of
// the repository's tracked files. Their library dependencies must be
// installed.
func UnpackDebs(ctx context.Context, cache, root string, pkgs ...string) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	for _, p := range pkgs {
		debs, _ := filepath.Glob(filepath.Join(cache, p+"_*.deb"))
		if len(debs) == 0 {
			if _, err := aptDownload(ctx, cache, p); err != nil {
				if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
					return fmt.Errorf("apt-get update: %v: %s", uerr, out)
				}
				if out, err := aptDownload(ctx, cache, p); err != nil {
					return fmt.Errorf("apt-get download %s: %v: %s", p, err, out)
				}
			}
			if debs, _ = filepath.Glob(filepath.Join(cache, p+"_*.deb")); len(debs) == 0 {
				return fmt.Errorf("apt-get download %s: no %s_*.deb in %s", p, p, cache)
			}
		}
		// The last in name order when the cache holds more than one.
		deb := debs[len(debs)-1]
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
		}
	}
	return nil
}

// aptDownload fetches package p's .deb (apt's candidate) into dir.
func aptDownload(ctx context.Context, dir, p string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "apt-get", "download", p)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}
