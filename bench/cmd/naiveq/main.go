//go:build linux

// Command naiveq is the naive Go NFQUEUE consumer of `make bench`
// (configuration C2): go-nfqueue used the obvious way, one Nfqueue per queue,
// a callback that accepts every packet with SetVerdict.
//
//	naiveq [-gso] [-failopen] [-copy N] QUEUE ...
//
// It prints "ready" once every queue is bound, and on SIGINT/SIGTERM one JSON
// line with the packets handled and the Go heap allocations made since ready.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

type report struct {
	Packets uint64 `json:"packets"`
	Mallocs uint64 `json:"mallocs"`
	Errors  uint64 `json:"errors"`
}

func main() {
	gso := flag.Bool("gso", false, "bind the queues with NFQA_CFG_F_GSO")
	failOpen := flag.Bool("failopen", false, "bind the queues with NFQA_CFG_F_FAIL_OPEN")
	copyLen := flag.Uint("copy", 0xffff, "copy range in bytes")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: naiveq [-gso] [-failopen] [-copy N] QUEUE ...")
		os.Exit(2)
	}
	var flags uint32
	if *gso {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	if *failOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	var packets, errs atomic.Uint64
	var nfs []*nfqueue.Nfqueue
	for _, arg := range flag.Args() {
		q, err := strconv.ParseUint(arg, 10, 16)
		if err != nil {
			fmt.Fprintf(os.Stderr, "queue %q: %v\n", arg, err)
			os.Exit(2)
		}
		nf, err := nfqueue.Open(&nfqueue.Config{
			NfQueue:      uint16(q),
			MaxPacketLen: uint32(*copyLen),
			MaxQueueLen:  4096,
			Copymode:     nfqueue.NfQnlCopyPacket,
			Flags:        flags,
			AfFamily:     unix.AF_UNSPEC,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "queue %d: %v\n", q, err)
			os.Exit(1)
		}
		nf.SetOption(netlink.NoENOBUFS, true)
		nf.Con.SetReadBuffer(16 << 20)
		err = nf.RegisterWithErrorFunc(ctx, func(a nfqueue.Attribute) int {
			if a.PacketID != nil {
				if err := nf.SetVerdict(*a.PacketID, nfqueue.NfAccept); err != nil {
					errs.Add(1)
				}
				packets.Add(1)
			}
			return 0
		}, func(err error) int {
			if ctx.Err() != nil {
				return 1
			}
			if errors.Is(err, unix.ENOBUFS) {
				return 0
			}
			errs.Add(1)
			return 0
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "queue %d: register: %v\n", q, err)
			os.Exit(1)
		}
		nfs = append(nfs, nf)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	start := ms.Mallocs
	fmt.Println("ready")
	<-ctx.Done()
	runtime.ReadMemStats(&ms)
	r := report{Packets: packets.Load(), Mallocs: ms.Mallocs - start, Errors: errs.Load()}
	for _, nf := range nfs {
		nf.Close()
	}
	json.NewEncoder(os.Stdout).Encode(r)
}
