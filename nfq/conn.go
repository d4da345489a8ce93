//go:build linux

package nfq

import (
	"encoding/binary"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The worker's netlink socket and its raw calls. The socket is the
// worker's own, outside the Go netpoller: registered there, every queued
// packet would also wake whichever thread waits in epoll, on top of the
// worker. The receive loop runs on a locked OS thread and blocks in
// poll(2), so the kernel wakes the one thread that answers.

// socketIn opens a NETLINK_NETFILTER socket in the network namespace netns
// (an open namespace file; 0: the current one).
func socketIn(netns int) (int, error) {
	if netns == 0 {
		return newSocket()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread stays locked, so it is discarded when this goroutine
		// ends: it never returns to the pool in the other namespace.
		runtime.LockOSThread()
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, err}
			return
		}
		fd, err := newSocket()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

func newSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setBuffer sets a socket buffer beyond net.core.[rw]mem_max when
// privileged (force: SO_RCVBUFFORCE, SO_SNDBUFFORCE), else as far as the
// limit allows (opt).
func setBuffer(fd, force, opt, n int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, n) == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, n)
}

// ackTimeout bounds the wait for the kernel's answer to a config message;
// it answers at once, during the sendmsg.
const ackTimeout = 5 * time.Second

// request sends one config message with sequence number seq and waits for
// its acknowledgement. Packets of queue that arrive meanwhile (it is bound
// before it is configured, and a packet queued then may carry no bytes) are
// accepted unchanged at once and reported through early.
func request(fd int, queue uint16, msg []byte, seq uint32, early func()) error {
	binary.NativeEndian.PutUint32(msg[8:12], seq)
	if err := send(fd, msg); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(ackTimeout)
	var q queued
	for {
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN || err == unix.EINTR {
			left := time.Until(deadline)
			if left <= 0 {
				return unix.ETIMEDOUT
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			unix.Poll(fds, int(left.Milliseconds())+1)
			continue
		}
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) > 0; {
			var kind msgKind
			kind, b = nextMsg(b, &q)
			switch {
			case kind == msgPacket:
				send(fd, appendVerdictMsg(nil, queue, false, q.id, acceptUnchanged, nil))
				early()
			case (kind == msgAck || kind == msgError) && q.seq == seq:
				if kind == msgError {
					return q.errno
				}
				return nil
			}
		}
	}
}

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// receiver reads several queue datagrams per syscall into one buffer that
// lives as long as the worker: slot i of size slotLen receives datagram i.
type receiver struct {
	buf     []byte
	slotLen int
	iov     []unix.Iovec
	msgs    []mmsghdr
}

// recvSlots is how many datagrams one recvmmsg can return. Each slot has
// room for a whole packet message: about 2 MiB of address space a worker at
// the default 64 KiB copy range. The buffer is mapped outside the Go heap,
// so only the pages the kernel writes to take memory, and the collector
// never scans or zeroes it.
const recvSlots = 32

// newReceiver sizes the slots for packets copied up to copyRange bytes (0:
// the kernel's maximum).
func newReceiver(copyRange uint32) (*receiver, error) {
	if copyRange == 0 || copyRange > maxCopyRange {
		copyRange = maxCopyRange
	}
	slotLen := align4(int(copyRange) + msgOverhead)
	buf, err := unix.Mmap(-1, 0, recvSlots*slotLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	r := &receiver{
		buf:     buf,
		slotLen: slotLen,
		iov:     make([]unix.Iovec, recvSlots),
		msgs:    make([]mmsghdr, recvSlots),
	}
	for i := range r.msgs {
		r.iov[i].Base = &r.buf[i*slotLen]
		r.iov[i].SetLen(slotLen)
		r.msgs[i].hdr.Iov = &r.iov[i]
		r.msgs[i].hdr.SetIovlen(1)
	}
	return r, nil
}

// close unmaps the buffer; nothing may use the receiver afterwards.
func (r *receiver) close() error { return unix.Munmap(r.buf) }

// slots is how many datagrams one recv can return.
func (r *receiver) slots() int { return len(r.msgs) }

// recv reads the datagrams waiting on fd without blocking: EAGAIN when
// there are none.
func (r *receiver) recv(fd int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.msgs[0])),
		uintptr(len(r.msgs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// datagram is the i-th datagram of the last recv.
func (r *receiver) datagram(i int) []byte {
	off := i * r.slotLen
	return r.buf[off : off+int(r.msgs[i].len)]
}

// waiter blocks a worker until its socket is readable or it is told to
// stop, through an eventfd.
type waiter struct {
	efd int
	fds [2]unix.PollFd
}

func newWaiter() (*waiter, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &waiter{efd: efd}, nil
}

// wait blocks until fd is readable (true) or wake was called (false).
func (w *waiter) wait(fd int) (bool, error) {
	w.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	w.fds[1] = unix.PollFd{Fd: int32(w.efd), Events: unix.POLLIN}
	for {
		_, err := unix.Poll(w.fds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		if w.fds[1].Revents != 0 {
			return false, nil
		}
		if w.fds[0].Revents&unix.POLLNVAL != 0 {
			return false, unix.EBADF
		}
		return true, nil
	}
}

// wake makes wait return false, now and from then on.
func (w *waiter) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(w.efd, one[:])
}

func (w *waiter) close() error { return unix.Close(w.efd) }

// send writes netlink messages to the kernel in one sendmsg. The kernel
// handles them in order before it returns; messages it refuses come back
// as NLMSG_ERROR on the socket.
func send(fd int, b []byte) error {
	for {
		_, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return err
		}
	}
}
