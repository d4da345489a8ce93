package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// URL is where a daemon listening on listen ([metrics] listen) serves
// path: an unspecified or empty host is reached on the loopback address.
func URL(listen, path string) (string, error) {
	if listen == "" {
		return "", errors.New("[metrics] listen is \"\": the daemon serves no status; set it (e.g. \"127.0.0.1:9464\") and restart tcpnorm")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("[metrics] listen %q: %v", listen, err)
	}
	if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// Fetch gets the /status document of the daemon listening on listen.
func Fetch(ctx context.Context, client *http.Client, listen string) (*Document, error) {
	u, err := URL(listen, "/status")
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the daemon at %s (is tcpnorm run running with this config?): %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	var d Document
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: not a tcpnorm status document: %w", u, err)
	}
	return &d, nil
}
