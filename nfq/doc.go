// Package nfq runs tcpnorm's NFQUEUE workers: one goroutine per queue, each
// owning its netlink socket and its normalize.Normalizer, so the packet path
// takes no locks.
//
// A worker always answers the kernel. Every packet gets a verdict: the
// normalizer's, or, if processing it panicked or failed, a plain accept of
// the original bytes, counted. Modified packets go back with their new
// bytes; unmodified packets with a plain accept. A packet copied short of its
// length is never returned modified. ENOBUFS on the socket (the kernel could
// not deliver some messages) is counted and never ends a worker. The hook
// never returns non-zero, and verdicts are given from the hook itself, on
// the goroutine that reads the socket.
//
// The worker does not use conntrack attributes (NFQA_CT): kernels built
// without NETFILTER_NETLINK_GLUE_CT never send them.
package nfq
