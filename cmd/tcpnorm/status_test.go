package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/status"
)

func TestStatusCommand(t *testing.T) {
	m := metrics.New("9.9.9")
	m.Queue(0).Packet(metrics.Modify, 2)
	srv := httptest.NewServer(status.Handler(m, status.Source{Version: "9.9.9", Count: 1, Ready: func() bool { return true }}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()

	tests := []struct {
		name     string
		config   string
		args     []string
		code     int
		out, err string
	}{
		{name: "table", config: fmt.Sprintf("[metrics]\nlisten = %q\n", addr), code: 0,
			out: "tcpnorm 9.9.9, ready"},
		{name: "json", config: fmt.Sprintf("[metrics]\nlisten = %q\n", addr), args: []string{"--json"}, code: 0,
			out: `"version": "9.9.9"`},
		{name: "daemon not running", config: fmt.Sprintf("[metrics]\nlisten = %q\n", closedAddr), code: 1,
			err: "tcpnorm status: cannot reach the daemon at http://" + closedAddr + "/status (is tcpnorm run running with this config?)"},
		{name: "metrics off", config: "[metrics]\nlisten = \"\"\n", code: 1,
			err: `tcpnorm status: [metrics] listen is "": the daemon serves no status`},
		{name: "bad config", config: "[metrics]\nlisen = \"\"\n", code: 1, err: "metrics.lisen: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.config)
			var out, errb bytes.Buffer
			code := runStatus(append([]string{"-c", path}, tt.args...), &out, &errb, nil)
			if code != tt.code || !strings.Contains(out.String(), tt.out) || !strings.Contains(errb.String(), tt.err) {
				t.Errorf("status: exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nwant stdout %q, stderr %q", code, tt.code, out.String(), errb.String(), tt.out, tt.err)
			}
		})
	}
}
