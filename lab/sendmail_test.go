//go:build linux

package lab

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSyslogLine(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{
			name: "glibc syslog(3) datagram",
			in:   "<22>Dec  7 22:04:06 sm-mta[27799]: 6B7M46jc027799: to=someone@lab.test, stat=Deferred",
			want: "Dec  7 22:04:06 mta sm-mta[27799]: 6B7M46jc027799: to=someone@lab.test, stat=Deferred\n",
		},
		{
			name: "trailing newline and NUL",
			in:   "<22>Dec 17 01:02:03 sm-mta[1]: x\n\x00",
			want: "Dec 17 01:02:03 mta sm-mta[1]: x\n",
		},
		{
			name: "too short for a stamp: kept as it is",
			in:   "<22>short",
			want: "short\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, string(syslogLine([]byte(tt.in), "mta"))); diff != "" {
				t.Errorf("syslogLine (-want +got):\n%s", diff)
			}
		})
	}
}

func TestM4(t *testing.T) {
	for _, tt := range []struct {
		name  string
		macro string
		args  []string
		want  string
	}{
		{"two arguments", "define", []string{"confHELP_FILE", ""}, "define(`confHELP_FILE', `')dnl"},
		{"one", "MAILER", []string{"smtp"}, "MAILER(`smtp')dnl"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := m4(tt.macro, tt.args...); got != tt.want {
				t.Errorf("m4(%q, %q) = %q, want %q", tt.macro, tt.args, got, tt.want)
			}
		})
	}
}
