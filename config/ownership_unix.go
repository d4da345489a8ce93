//go:build unix

package config

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// unsafeOwnership says why a policy file or directory must not be trusted,
// like sshd's StrictModes: writable by everyone, or owned by a user other
// than root and the one running tcpnorm.
func unsafeOwnership(st fs.FileInfo) string {
	if st.Mode().Perm()&0o002 != 0 {
		if st.IsDir() {
			return fmt.Sprintf("directory is world-writable (mode %04o); run chmod o-w", st.Mode().Perm())
		}
		return fmt.Sprintf("file is world-writable (mode %04o); run chmod o-w", st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		uid := int(sys.Uid)
		if me := os.Geteuid(); uid != 0 && uid != me {
			return fmt.Sprintf("owned by uid %d, which is neither root nor the user running tcpnorm (uid %d)", uid, me)
		}
	}
	return ""
}
