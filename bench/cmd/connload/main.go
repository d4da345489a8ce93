//go:build linux

// Command connload is the short-connection load generator of `make bench`.
//
//	connload serve -listen ADDR:PORT
//	connload run -dst ADDR:PORT -src FIRST -nsrc N [-c N] [-d DUR] [-rate R] [-bytes N]
//
// serve accepts connections, reads until the peer closes, and closes. run
// makes short connections from N consecutive IPv4 source addresses starting
// at FIRST, in turn, with -c goroutines: connect, send -bytes bytes, close.
// Each connect is a blocking connect(2) timed around the call, so its time is
// the handshake as the client sees it (SYN out to SYN-ACK processed). With
// -rate each goroutine paces itself to rate/c connections a second (a light
// load for latency); without it they run flat out (connections a second).
// run prints one JSON line: connections, errors, connections a second, and
// the connect latency percentiles in microseconds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Result is what run prints.
type Result struct {
	Conns     int     `json:"conns"`
	Errors    int     `json:"errors"`
	Seconds   float64 `json:"seconds"`
	ConnPerS  float64 `json:"conn_per_s"`
	P50us     float64 `json:"p50_us"`
	P90us     float64 `json:"p90_us"`
	P99us     float64 `json:"p99_us"`
	FirstErr  string  `json:"first_error,omitempty"`
	Goroutine int     `json:"goroutines"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		listen := fs.String("listen", "", "address:port to listen on")
		fs.Parse(os.Args[2:])
		if err := serve(*listen); err != nil {
			fmt.Fprintln(os.Stderr, "connload serve:", err)
			os.Exit(1)
		}
	case "run":
		fs := flag.NewFlagSet("run", flag.ExitOnError)
		dst := fs.String("dst", "", "server address:port (IPv4)")
		src := fs.String("src", "", "first source address (IPv4)")
		nsrc := fs.Int("nsrc", 1, "number of consecutive source addresses")
		conc := fs.Int("c", 64, "concurrent connecting goroutines")
		dur := fs.Duration("d", 5*time.Second, "duration")
		rate := fs.Float64("rate", 0, "connections a second in all (0: as fast as possible)")
		nbytes := fs.Int("bytes", 16, "bytes sent on each connection")
		fs.Parse(os.Args[2:])
		r, err := run(*dst, *src, *nsrc, *conc, *dur, *rate, *nbytes)
		if err != nil {
			fmt.Fprintln(os.Stderr, "connload run:", err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(r)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: connload serve -listen ADDR:PORT | connload run -dst ADDR:PORT -src FIRST -nsrc N [-c N] [-d DUR] [-rate R] [-bytes N]")
	os.Exit(2)
}

func serve(addr string) error {
	lc := net.ListenConfig{}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return err
		}
		go func() {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c)
		}()
	}
}

func run(dst, src string, nsrc, conc int, dur time.Duration, rate float64, nbytes int) (Result, error) {
	d, err := netip.ParseAddrPort(dst)
	if err != nil || !d.Addr().Is4() {
		return Result{}, fmt.Errorf("-dst %q: want IPv4 address:port", dst)
	}
	s, err := netip.ParseAddr(src)
	if err != nil || !s.Is4() {
		return Result{}, fmt.Errorf("-src %q: want an IPv4 address", src)
	}
	if nsrc < 1 || conc < 1 || nbytes < 0 || dur <= 0 {
		return Result{}, fmt.Errorf("-nsrc, -c, -d must be positive")
	}
	srcs := make([]netip.Addr, nsrc)
	a := s
	for i := range srcs {
		srcs[i] = a
		a = a.Next()
	}
	payload := make([]byte, nbytes)
	var (
		mu       sync.Mutex
		lat      []int64
		errs     int
		firstErr string
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var my []int64
			myErrs := 0
			var myFirst string
			var gap time.Duration
			if rate > 0 {
				gap = time.Duration(float64(time.Second) * float64(conc) / rate)
			}
			next := time.Now()
			for i := g; ; i += conc {
				now := time.Now()
				if now.After(deadline) {
					break
				}
				if gap > 0 {
					if next.After(now) {
						time.Sleep(next.Sub(now))
					}
					next = next.Add(gap)
				}
				us, err := once(srcs[i%len(srcs)], d, payload)
				if err != nil {
					myErrs++
					if myFirst == "" {
						myFirst = err.Error()
					}
					continue
				}
				my = append(my, us)
			}
			mu.Lock()
			lat = append(lat, my...)
			errs += myErrs
			if firstErr == "" {
				firstErr = myFirst
			}
			mu.Unlock()
		}(g)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	slices.Sort(lat)
	r := Result{Conns: len(lat), Errors: errs, Seconds: secs, ConnPerS: float64(len(lat)) / secs,
		P50us: pct(lat, 0.50), P90us: pct(lat, 0.90), P99us: pct(lat, 0.99), FirstErr: firstErr, Goroutine: conc}
	return r, nil
}

// pct is the p quantile of sorted nanoseconds, in microseconds.
func pct(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return float64(sorted[i]) / 1e3
}

// once makes one connection and returns its connect time in nanoseconds.
func once(src netip.Addr, dst netip.AddrPort, payload []byte) (int64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	// The port is chosen at connect, per destination: many more
	// connections per source address than bind(port 0) allows.
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	tv := unix.Timeval{Sec: 3}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		return 0, fmt.Errorf("bind %s: %w", src, err)
	}
	sa := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	t0 := time.Now()
	err = unix.Connect(fd, sa)
	if err == unix.EINTR {
		err = waitConnected(fd)
	}
	if err != nil {
		return 0, fmt.Errorf("connect %s from %s: %w", dst, src, err)
	}
	ns := time.Since(t0).Nanoseconds()
	if len(payload) > 0 {
		if _, err := unix.Write(fd, payload); err != nil {
			return 0, fmt.Errorf("write: %w", err)
		}
	}
	return ns, nil
}

// waitConnected finishes a connect(2) a signal interrupted: the handshake
// goes on in the kernel; poll for it and read its outcome.
func waitConnected(fd int) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(pfd, 3000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		break
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soErr != 0 {
		return unix.Errno(soErr)
	}
	return nil
}
