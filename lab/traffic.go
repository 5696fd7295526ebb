package lab

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/frames"
	"github.com/vxdp/vxdp/state"
)

// PingResult is the outcome of Ping.
type PingResult struct {
	Sent, Received int
	RTTs           []time.Duration
	// Answered are the times the answered echoes were sent (when a
	// running ping stopped being answered).
	Answered []time.Time
}

// Ping sends count ICMP echo requests from namespace ns to dst, one per
// interval, and counts the matching replies (each awaited up to timeout).
// It uses a raw socket, so it needs no ping binary and no ping_group_range.
func Ping(ns string, dst netip.Addr, count int, interval, timeout time.Duration) (PingResult, error) {
	var res PingResult
	var conn net.PacketConn
	if err := Do(ns, func() (err error) {
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return res, fmt.Errorf("icmp socket in %s: %w", ns, err)
	}
	defer conn.Close()
	id := uint16(rand.Uint32())
	payload := []byte("vxdp-lab-ping-0123456789abcdefghijklmnopqrstuvwxyz")
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		if seq > 1 {
			time.Sleep(interval)
		}
		msg := icmpEcho(8, id, uint16(seq), payload)
		start := time.Now()
		if _, err := conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return res, fmt.Errorf("ping %s from %s: %w", dst, ns, err)
		}
		res.Sent++
		deadline := start.Add(timeout)
		for {
			_ = conn.SetReadDeadline(deadline)
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // timeout: lost
			}
			// Raw ip4:icmp sockets deliver the ICMP message without the IP header.
			if n < 8 || buf[0] != 0 || binary.BigEndian.Uint16(buf[4:]) != id || binary.BigEndian.Uint16(buf[6:]) != uint16(seq) {
				continue
			}
			if a, ok := from.(*net.IPAddr); !ok || !a.IP.Equal(dst.AsSlice()) {
				continue
			}
			res.Received++
			res.RTTs = append(res.RTTs, time.Since(start))
			res.Answered = append(res.Answered, start)
			break
		}
	}
	return res, nil
}

func icmpEcho(typ uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], inetChecksum(b, 0))
	return b
}

// inetChecksum is the Internet checksum of b, starting from sum.
func inetChecksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Transfer is a TCP transfer between two namespaces, started by StartTCP.
type Transfer struct {
	Size     int64
	received atomic.Int64
	done     chan struct{}
	res      TransferResult
}

// TransferResult is the outcome of a Transfer.
type TransferResult struct {
	Received      int64
	SentSum       [32]byte
	ReceivedSum   [32]byte
	Duration      time.Duration
	Retransmits   uint32 // sender's tcpi_total_retrans
	SenderErr     error
	ReceiverErr   error
	SegmentsSent  uint32 // sender's tcpi_data_segs_out
	SegmentsRecvd uint32 // receiver's tcpi_data_segs_in
}

// OK reports whether every byte arrived intact with no error on either side.
func (r TransferResult) OK() bool {
	return r.SenderErr == nil && r.ReceiverErr == nil && r.SentSum == r.ReceivedSum
}

func (r TransferResult) String() string {
	return fmt.Sprintf("%d bytes in %v, sha256 sent %x received %x, retransmits %d, sender error %v, receiver error %v",
		r.Received, r.Duration.Round(time.Millisecond), r.SentSum[:6], r.ReceivedSum[:6], r.Retransmits, r.SenderErr, r.ReceiverErr)
}

// TCPOptions tune StartTCP.
type TCPOptions struct {
	// Rate limits the sender to this many bytes per second (0: as fast as
	// possible), to make a transfer last while something else happens.
	Rate int64
	// Timeout bounds the whole transfer (default 60 s).
	Timeout time.Duration
	// Port the receiver listens on (0: any free one).
	Port int
}

// StartTCP starts sending size bytes of pseudo-random data over TCP from
// namespace src to dstIP, served by a listener in namespace dst. Wait
// returns the result; the receiver checks the SHA-256 of what arrived.
func StartTCP(src, dst string, dstIP netip.Addr, size int64, o TCPOptions) (*Transfer, error) {
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	var ln net.Listener
	if err := Do(dst, func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(dstIP.String(), fmt.Sprint(o.Port)))
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen in %s: %w", dst, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var conn net.Conn
	if err := Do(src, func() (err error) {
		conn, err = net.DialTimeout("tcp4", net.JoinHostPort(dstIP.String(), fmt.Sprint(port)), min(5*time.Second, o.Timeout))
		return err
	}); err != nil {
		ln.Close()
		return nil, fmt.Errorf("connect %s -> %s:%d: %w", src, dstIP, port, err)
	}
	t := &Transfer{Size: size, done: make(chan struct{})}
	deadline := time.Now().Add(o.Timeout)
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // receiver
		defer wg.Done()
		defer ln.Close()
		_ = ln.(*net.TCPListener).SetDeadline(deadline)
		c, err := ln.Accept()
		if err != nil {
			t.res.ReceiverErr = fmt.Errorf("accept: %w", err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			h.Write(buf[:n])
			t.received.Add(int64(n))
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.res.ReceiverErr = fmt.Errorf("read after %d bytes: %w", t.received.Load(), err)
				break
			}
		}
		copy(t.res.ReceivedSum[:], h.Sum(nil))
		if info := tcpInfo(c); info != nil {
			t.res.SegmentsRecvd = info.Data_segs_in
		}
	}()
	go func() { // sender
		defer wg.Done()
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		rng := rand.NewChaCha8([32]byte{'v', 'x', 'd', 'p'})
		h := sha256.New()
		buf := make([]byte, 16<<10)
		var sent int64
		for sent < size {
			n := min(int64(len(buf)), size-sent)
			_, _ = rng.Read(buf[:n])
			if _, err := conn.Write(buf[:n]); err != nil {
				t.res.SenderErr = fmt.Errorf("write after %d bytes: %w", sent, err)
				break
			}
			h.Write(buf[:n])
			sent += n
			if o.Rate > 0 {
				if ahead := time.Duration(float64(sent)/float64(o.Rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		copy(t.res.SentSum[:], h.Sum(nil))
		if info := tcpInfo(conn); info != nil {
			t.res.Retransmits = info.Total_retrans
			t.res.SegmentsSent = info.Data_segs_out
		}
		if tc, ok := conn.(*net.TCPConn); ok && t.res.SenderErr == nil {
			_ = tc.CloseWrite()
		}
	}()
	go func() {
		wg.Wait()
		t.res.Received = t.received.Load()
		t.res.Duration = time.Since(start)
		close(t.done)
	}()
	return t, nil
}

// Received is how many bytes have arrived so far.
func (t *Transfer) Received() int64 { return t.received.Load() }

// Wait waits for the transfer to end (or ctx) and returns its result.
func (t *Transfer) Wait(ctx context.Context) (TransferResult, error) {
	select {
	case <-t.done:
		return t.res, nil
	case <-ctx.Done():
		return TransferResult{Received: t.Received()}, ctx.Err()
	}
}

// TCP runs a transfer to completion.
func TCP(src, dst string, dstIP netip.Addr, size int64) (TransferResult, error) {
	t, err := StartTCP(src, dst, dstIP, size, TCPOptions{})
	if err != nil {
		return TransferResult{}, err
	}
	return t.Wait(context.Background())
}

func tcpInfo(c net.Conn) *unix.TCPInfo {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	var info *unix.TCPInfo
	_ = raw.Control(func(fd uintptr) {
		info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	return info
}

// Frame is a captured Ethernet frame.
type Frame struct {
	Data     []byte
	Outgoing bool // sent by this host (PACKET_OUTGOING)
	At       time.Time
}

// Capture records every frame seen on a device, like tcpdump -i dev.
type Capture struct {
	fd     int
	stop   atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	frames []Frame
	err    error
}

// StartCapture opens an AF_PACKET socket on dev in namespace ns.
func StartCapture(ns, dev string) (*Capture, error) {
	c := &Capture{fd: -1, done: make(chan struct{})}
	if err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		// The kernel keeps VLAN tags out of the frame (in the skb); with
		// auxdata it says which, and the capture puts them back as
		// tcpdump does.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	}); err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("capture on %s in %s: %w", dev, ns, err)
	}
	go c.loop()
	return c, nil
}

func (c *Capture) loop() {
	defer close(c.done)
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{}))))
	for !c.stop.Load() {
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		f := Frame{Data: withVLANTag(buf[:n], oob[:oobn]), At: time.Now()}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			f.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// withVLANTag copies a captured frame, putting back the VLAN tag the
// kernel reported beside it (PACKET_AUXDATA).
func withVLANTag(frame, oob []byte) []byte {
	out := append([]byte(nil), frame...)
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(frame) < 12 {
		return out
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			continue
		}
		aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
		if aux.Status&unix.TP_STATUS_VLAN_VALID == 0 {
			continue
		}
		tpid := uint16(unix.ETH_P_8021Q)
		if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			tpid = aux.Vlan_tpid
		}
		tagged := append([]byte(nil), frame[:12]...)
		tagged = binary.BigEndian.AppendUint16(tagged, tpid)
		tagged = binary.BigEndian.AppendUint16(tagged, aux.Vlan_tci)
		return append(tagged, frame[12:]...)
	}
	return out
}

// Stop ends the capture and returns every frame captured.
func (c *Capture) Stop() ([]Frame, error) {
	if c.stop.CompareAndSwap(false, true) {
		<-c.done
		unix.Close(c.fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...), c.err
}

// SendFrame injects a raw Ethernet frame on dev in namespace ns.
func SendFrame(ns, dev string, frame []byte) error {
	return Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6})
	})
}

// SendUDP sends one datagram from namespace ns (the kernel picks the
// source); dst may be a broadcast address.
func SendUDP(ns string, dst netip.AddrPort, payload []byte) error {
	return Do(ns, func() error {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		c, err := d.Dial("udp4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// SetMACAndAnnounce gives dev (in the calling thread's namespace) a new
// MAC and announces it with a gratuitous ARP for ip, as a host does after
// its NIC is replaced.
func SetMACAndAnnounce(dev string, mac state.MAC, ip netip.Addr) error {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(l, mac[:]); err != nil {
		return fmt.Errorf("set %s's MAC: %w", dev, err)
	}
	garp := frames.ARPRequest(mac[:], ip, ip).Bytes()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, garp, 0, &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6})
}
