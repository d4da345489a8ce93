//go:build linux

// Package nfq runs tcpnorm's NFQUEUE workers: one goroutine per queue, each
// on its own locked OS thread, owning its netlink socket, its receive and
// verdict buffers and its normalize.Normalizer, so the packet path takes no
// locks and allocates nothing.
//
// The worker speaks nfnetlink_queue itself, on a netlink socket of its own
// that the Go netpoller does not watch (so a queued packet wakes only the
// worker's thread): it binds the queue, waits in poll(2), reads every
// waiting packet message with one recvmmsg(2) into its own buffer, decodes
// them in place, and sends the verdicts for all of them in one sendmsg. On
// fail-open queues a run of plain accepts goes as one
// NFQNL_MSG_VERDICT_BATCH; on the others every packet is answered by its
// id. go-nfqueue is used for its constants only.
//
// A worker always answers the kernel. Every packet gets a verdict: the
// normalizer's, or, if processing it panicked or failed, a plain accept of
// the original bytes, counted. Modified packets go back with their new
// bytes; unmodified packets with a plain accept. A packet copied short of
// its length is never returned modified. ENOBUFS on the socket (the kernel
// could not deliver some messages) is counted and never ends a worker.
//
// The worker does not use conntrack attributes (NFQA_CT): kernels built
// without NETFILTER_NETLINK_GLUE_CT never send them.
package nfq
