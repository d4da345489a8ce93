package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

const versionUsage = `usage: tcpnorm version

Prints tcpnorm's module version, the Go version and OS/arch it was built
for, and the source revision it was built from, all read from the build
information the Go toolchain writes into the binary (go version -m shows
the same). A build outside a git checkout, or with -buildvcs=false, has
version "(devel)" and no revision.
`

// build is what the binary says of itself.
type build struct {
	Version  string // module version: a tag, or a pseudo-version from the commit
	Revision string // VCS revision, "" when not stamped
	Time     string // commit time
	Modified bool   // built from a tree with uncommitted changes
	Go       string
}

// version is the module version, for the metrics and the status document.
var version = readBuild().Version

// readBuild reads the build information the toolchain stamped.
func readBuild() build {
	b := build{Version: "(devel)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := bi.Main.Version; v != "" {
		b.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// write prints the version: the first line is `tcpnorm VERSION GOVERSION
// OS/ARCH`, as scripts read it.
func (b build) write(w io.Writer) {
	fmt.Fprintf(w, "tcpnorm %s %s %s/%s\n", b.Version, b.Go, runtime.GOOS, runtime.GOARCH)
	if b.Revision == "" {
		fmt.Fprintln(w, "revision unknown (not built from a git checkout)")
		return
	}
	rev := []string{"revision", b.Revision}
	if b.Time != "" {
		rev = append(rev, b.Time)
	}
	if b.Modified {
		rev = append(rev, "(modified)")
	}
	fmt.Fprintln(w, strings.Join(rev, " "))
}
