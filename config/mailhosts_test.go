package config

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolveMailHosts(t *testing.T) {
	z := startZone(t)
	cfg := &Config{DNS: DNS{Servers: []string{z.addr}}}
	tests := []struct {
		name      string
		domain    string
		want      []string
		wantMX    bool
		wantErrs  int
		wantNotes []string
	}{
		{name: "MX hosts, not the domain's own A", domain: "example.test", wantMX: true,
			want: []string{"198.18.2.1", "198.18.2.2", "2001:2:0:2::2"}},
		{name: "no MX: the implicit MX", domain: "other.test", want: []string{"198.18.1.1"}},
		{name: "null MX", domain: "nullmx.test", wantMX: true,
			wantNotes: []string{"nullmx.test: null MX (RFC 7505): the domain accepts no mail"}},
		{name: "no such domain", domain: "nowhere.test",
			wantNotes: []string{"nowhere.test: no such domain (NXDOMAIN)"}},
		{name: "SERVFAIL", domain: "fail.test", wantErrs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mh, err := ResolveMailHosts(context.Background(), cfg, tt.domain)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range mh.Addrs {
				got = append(got, a.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
			if mh.MX != tt.wantMX || len(mh.Errs) != tt.wantErrs {
				t.Errorf("MX %v errs %q, want MX %v and %d errors", mh.MX, mh.Errs, tt.wantMX, tt.wantErrs)
			}
			if diff := cmp.Diff(tt.wantNotes, mh.Notes); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
		})
	}
}
