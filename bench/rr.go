package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/lab"
)

// TCP request/response, as netperf's TCP_RR and TCP_CRR: one byte each
// way over one connection (rr), or over a new connection per transaction
// (crr: connect, request, response, close). Client and server are
// blocking sockets on threads of their own in the VMs' namespaces, so no
// scheduler or poller sits between a packet and its answer.

// transaction is one request/response: when it ended and how long it
// took, or that it failed.
type transaction struct {
	end    time.Time
	rtt    time.Duration
	failed bool
}

// maxFailures in a row end a crr run: a connection refused or reset now
// and then (a firewall's conntrack and a reused port's TIME_WAIT can
// disagree) is counted, a path that stopped working is an error.
const maxFailures = 20

// ioTimeout bounds every blocking call, so a lost packet ends a run
// instead of hanging it.
var ioTimeout = unix.Timeval{Sec: 2}

// runRR runs transactions from namespace src to a server in dst for
// length and returns each one.
func runRR(src, dst string, dstIP netip.Addr, newConns bool, length time.Duration) ([]transaction, error) {
	var stop atomic.Bool
	var srvErr error
	var lfd int
	var wg sync.WaitGroup
	if err := lab.Do(dst, func() (err error) {
		lfd, err = listenTCP(dstIP)
		return err
	}); err != nil {
		return nil, fmt.Errorf("rr server in %s: %w", dst, err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		unix.Close(lfd)
		return nil, err
	}
	port := sa.(*unix.SockaddrInet4).Port
	wg.Add(1)
	go func() {
		defer wg.Done()
		srvErr = lab.Do(dst, func() error { return serveRR(lfd, &stop) })
	}()
	var txs []transaction
	cliErr := lab.Do(src, func() error {
		to := &unix.SockaddrInet4{Port: port, Addr: dstIP.As4()}
		deadline := time.Now().Add(length)
		if !newConns {
			fd, err := dialTCP(to)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			for time.Now().Before(deadline) {
				t, err := exchange(fd)
				if err != nil {
					return err
				}
				txs = append(txs, t)
			}
			return nil
		}
		failures := 0
		for time.Now().Before(deadline) {
			start := time.Now()
			fd, err := dialTCP(to)
			if err == nil {
				_, err = exchange(fd)
				unix.Close(fd)
			}
			end := time.Now()
			if err != nil {
				if failures++; failures == maxFailures {
					return fmt.Errorf("%d connections in a row failed, the last: %w", failures, err)
				}
				txs = append(txs, transaction{end: end, failed: true})
				continue
			}
			failures = 0
			txs = append(txs, transaction{end: end, rtt: end.Sub(start)})
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()
	unix.Close(lfd)
	if cliErr != nil {
		return txs, fmt.Errorf("rr client in %s: %w", src, cliErr)
	}
	return txs, srvErr
}

func listenTCP(ip netip.Addr) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	// accept returns EAGAIN every 100 ms, to notice the stop.
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ip.As4()}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, 1024); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func dialTCP(to *unix.SockaddrInet4) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	// Without a timeout yet, a signal restarts connect (SA_RESTART).
	if err := unix.Connect(fd, to); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &ioTimeout)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &ioTimeout)
	return fd, nil
}

// exchange sends one byte and waits for one back.
func exchange(fd int) (transaction, error) {
	var b [1]byte
	start := time.Now()
	if _, err := retryEINTR(func() (int, error) { return unix.Write(fd, b[:]) }); err != nil {
		return transaction{}, fmt.Errorf("request: %w", err)
	}
	if n, err := retryEINTR(func() (int, error) { return unix.Read(fd, b[:]) }); err != nil || n != 1 {
		return transaction{}, fmt.Errorf("response: %d bytes, %v", n, err)
	}
	end := time.Now()
	return transaction{end: end, rtt: end.Sub(start)}, nil
}

// retryEINTR repeats a call a signal interrupted: with a timeout set on
// the socket, the kernel does not restart it (signal(7)), and the Go
// runtime signals its threads.
func retryEINTR(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// serveRR answers every byte with a byte on each connection it accepts,
// one connection at a time (the client runs one at a time), until stop.
func serveRR(lfd int, stop *atomic.Bool) error {
	var b [1]byte
	for !stop.Load() {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
		for !stop.Load() {
			n, err := unix.Read(fd, b[:])
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n == 0 {
				break // the client closed (crr) or went away
			}
			if _, err := retryEINTR(func() (int, error) { return unix.Write(fd, b[:]) }); err != nil {
				break
			}
		}
		unix.Close(fd)
	}
	return nil
}

// within keeps the transactions that ended in [from, to]: the times of
// those that completed, and how many failed.
func within(txs []transaction, from, to time.Time) (rtts []time.Duration, failed int) {
	for _, t := range txs {
		switch {
		case t.end.Before(from) || t.end.After(to):
		case t.failed:
			failed++
		default:
			rtts = append(rtts, t.rtt)
		}
	}
	return rtts, failed
}
