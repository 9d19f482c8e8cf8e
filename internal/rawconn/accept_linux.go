package rawconn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// A connection that Listener accepts stays outside the runtime until it has to wait. Why: the
// net package's accept, its close, and the fcntl, getsockname and setsockopt around them are
// system calls that enter the runtime's syscall state, so each wakes the system monitor from its
// deep sleep (see the package comment), twice per probe; and registering the socket with the
// netpoller and removing it again costs two more calls. A kubelet's probe needs none of it: with
// TCP_DEFER_ACCEPT its request is in the socket when it is accepted, and the answer fits the
// socket's buffer, so accept, read, write (with MSG_MORE, and the shutdown that sends the answer and
// the FIN in one segment: WriteLast) and close are five raw system calls. The first time a
// connection would wait — a request that has not arrived whole, a next request on a kept-alive
// connection, a client that does not take its answer, a lingering close — it joins the netpoller
// (os.NewFile) and waits there with its deadlines, as any net.Conn does.

// Listener is a TCP listener whose Accept makes its system calls raw and returns an *FDConn.
type Listener struct {
	*net.TCPListener
	// file is a duplicate of the listener's descriptor, for its RawConn: a listener's own RawConn
	// cannot wait for readiness (its Read is EINVAL), a file's can.
	file   *os.File
	raw    syscall.RawConn
	closed atomic.Bool
}

// WrapListener returns l accepting through raw system calls, or l itself when it is not a TCP
// listener or the system is not Linux.
func WrapListener(l net.Listener) net.Listener {
	tcp, ok := l.(*net.TCPListener)
	if !ok {
		return l
	}
	file, err := tcp.File()
	if err != nil {
		return l
	}
	raw, err := file.SyscallConn()
	if err == nil {
		err = file.SetReadDeadline(time.Time{}) // fails unless the netpoller took the file
	}
	if err != nil {
		file.Close()
		return l
	}
	return &Listener{TCPListener: tcp, file: file, raw: raw}
}

// Close closes the listener and its duplicate, which wakes an Accept waiting on it.
func (l *Listener) Close() error {
	l.closed.Store(true)
	l.file.Close()
	return l.TCPListener.Close()
}

// Accept waits on the netpoller for a connection and accepts it with accept4(2), non-blocking.
// TCP_NODELAY, which the net package sets here, is set before the connection's second write
// (FDConn.Write).
func (l *Listener) Accept() (net.Conn, error) {
	for {
		var fd int
		var errno syscall.Errno
		err := l.raw.Read(func(listener uintptr) bool {
			fd, errno = rawAccept(listener)
			return errno != syscall.EAGAIN
		})
		switch {
		case err != nil && l.closed.Load():
			// The file's error when Close closed it under the wait, "use of closed file", is the
			// listener's net.ErrClosed.
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
		case err != nil:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: unwrapOpError(err)}
		case errno == syscall.ECONNABORTED: // the client went before it was accepted
			continue
		case errno != 0:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", errno)}
		}
		return &FDConn{fd: fd}, nil
	}
}

func rawAccept(listener uintptr) (int, syscall.Errno) {
	for {
		fd, _, errno := syscall.RawSyscall6(syscall.SYS_ACCEPT4, listener, 0, 0,
			syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		if errno != syscall.EINTR {
			return int(fd), errno
		}
	}
}

// FDConn is an accepted TCP connection that reads, writes and closes with raw system calls on its
// file descriptor until it first has to wait; from then on it is a file of the netpoller's, read and
// written through its RawConn (still raw system calls), with the deadlines set so far.
type FDConn struct {
	// mu guards the state below, and every raw system call on fd before the connection joins the
	// netpoller: a Close from another goroutine must not free the descriptor under a read. The calls
	// never wait (the socket is non-blocking), and nothing waits while holding mu.
	mu                          sync.Mutex
	fd                          int
	closed                      bool
	file                        *os.File        // set when the connection joined the netpoller
	raw                         syscall.RawConn // the file's
	readDeadline, writeDeadline time.Time       // until it joins; then the file's
	// wrote: a write began. noDelay: TCP_NODELAY is set. The net package sets it on every
	// connection; here it is set only before a write that Nagle's algorithm could hold back, one made
	// while data written earlier may be unacknowledged. The first write is never such a write, and a
	// kubelet's probe (one answer, then the close) makes no other: a system call less per probe.
	wrote, noDelay bool
}

// Read reads what the socket holds; when it holds nothing yet, the connection joins the netpoller
// and waits there, as Conn.Read does.
func (c *FDConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	if c.file == nil {
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, c.opError("read", net.ErrClosed)
		case passed(c.readDeadline):
			c.mu.Unlock()
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		n, errno := rawRead(uintptr(c.fd), p)
		if errno != syscall.EAGAIN {
			c.mu.Unlock()
			switch {
			case errno != 0:
				return 0, c.opError("read", os.NewSyscallError("read", errno))
			case n == 0:
				return 0, io.EOF
			}
			return n, nil
		}
		if err := c.joinNetpoller(); err != nil {
			c.mu.Unlock()
			return 0, c.opError("read", err)
		}
	}
	raw := c.raw
	c.mu.Unlock()
	n, err := read(raw, p)
	if err != nil && err != io.EOF {
		return n, c.waitError("read", err)
	}
	return n, err
}

// Write writes all of p; when the socket's buffer is full, the connection joins the netpoller and
// waits there for the rest, as Conn.Write does.
func (c *FDConn) Write(p []byte) (int, error) { return c.write(p, 0) }

// write is Write with the send(2) flags of its raw system calls (those of the netpoller's wait
// have none: a write that waited is not held back).
func (c *FDConn) write(p []byte, flags int) (int, error) {
	c.mu.Lock()
	if c.wrote {
		c.setNoDelay()
	}
	c.wrote = true
	written := 0
	if c.file == nil {
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, c.opError("write", net.ErrClosed)
		case passed(c.writeDeadline):
			c.mu.Unlock()
			return 0, c.opError("write", os.ErrDeadlineExceeded)
		}
		for written < len(p) {
			n, errno := rawSend(uintptr(c.fd), p[written:], flags)
			if errno == syscall.EAGAIN {
				break
			}
			if errno != 0 {
				c.mu.Unlock()
				return written, c.opError("write", os.NewSyscallError("write", errno))
			}
			written += n
		}
		if written == len(p) {
			c.mu.Unlock()
			return written, nil
		}
		c.setNoDelay() // the rest follows data not yet acknowledged
		if err := c.joinNetpoller(); err != nil {
			c.mu.Unlock()
			return written, c.opError("write", err)
		}
	}
	raw := c.raw
	c.mu.Unlock()
	n, err := write(raw, p[written:])
	if err != nil {
		return written + n, c.waitError("write", err)
	}
	return written + n, nil
}

// WriteLast writes p as the last data of the connection and shuts down its writing side, so that p
// and the FIN leave in one segment: written with MSG_MORE, p waits in the socket for the shutdown,
// which sends both. Written as Write then CloseWrite, they are two segments, each a transmit through
// the network stack of serve's own and, on loopback or a veth, of the receiver's. A kubelet's probe
// gets its answer and the end of the connection at once.
func (c *FDConn) WriteLast(p []byte) (int, error) {
	n, err := c.write(p, syscall.MSG_MORE)
	if err != nil {
		return n, err
	}
	return n, c.CloseWrite()
}

// setNoDelay sets TCP_NODELAY once, under c.mu, on an open connection. A failure is ignored, as the
// net package ignores it: the connection works without.
func (c *FDConn) setNoDelay() {
	if c.noDelay || c.closed {
		return
	}
	c.noDelay = true
	set := func(fd uintptr) {
		one := int32(1)
		_, _, _ = syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY,
			uintptr(unsafe.Pointer(&one)), unsafe.Sizeof(one), 0)
	}
	if c.file != nil {
		_ = c.raw.Control(set)
		return
	}
	set(uintptr(c.fd))
}

// joinNetpoller makes the descriptor a file of the netpoller's, with the deadlines set so far. Under
// c.mu, with the connection open and not yet joined.
func (c *FDConn) joinNetpoller() error {
	file := os.NewFile(uintptr(c.fd), "tcp")
	raw, err := file.SyscallConn()
	if err == nil {
		// A file the netpoller refused has no deadlines: it would block the thread, so it is not used.
		err = file.SetReadDeadline(c.readDeadline)
	}
	if err == nil {
		err = file.SetWriteDeadline(c.writeDeadline)
	}
	if err != nil {
		file.Close()
		c.closed = true
		return err
	}
	c.file, c.raw = file, raw
	return nil
}

// Close closes the connection; a read or write waiting on it returns net.ErrClosed.
func (c *FDConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	if file := c.file; file != nil {
		c.mu.Unlock()
		return file.Close()
	}
	_, _, errno := syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.fd), 0, 0)
	c.mu.Unlock()
	if errno != 0 {
		return c.opError("close", os.NewSyscallError("close", errno))
	}
	return nil
}

// CloseWrite shuts down the writing side of the socket.
func (c *FDConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opError("shutdown", net.ErrClosed)
	}
	shutdown := func(fd uintptr) syscall.Errno {
		_, _, errno := syscall.RawSyscall(syscall.SYS_SHUTDOWN, fd, syscall.SHUT_WR, 0)
		return errno
	}
	var errno syscall.Errno
	if c.file != nil {
		if err := c.raw.Control(func(fd uintptr) { errno = shutdown(fd) }); err != nil {
			return c.opError("shutdown", err)
		}
	} else {
		errno = shutdown(uintptr(c.fd))
	}
	if errno != 0 {
		return c.opError("shutdown", os.NewSyscallError("shutdown", errno))
	}
	return nil
}

func (c *FDConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *FDConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(t, &c.readDeadline, (*os.File).SetReadDeadline)
}

func (c *FDConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(t, &c.writeDeadline, (*os.File).SetWriteDeadline)
}

// setDeadline keeps the deadline until the connection joins the netpoller, and gives it to the file
// after: a read waiting there wakes when it passes, as on any net.Conn.
func (c *FDConn) setDeadline(t time.Time, kept *time.Time, set func(*os.File, time.Time) error) error {
	c.mu.Lock()
	file := c.file
	if file == nil {
		*kept = t
	}
	closed := c.closed
	c.mu.Unlock()
	switch {
	case file != nil:
		return set(file, t)
	case closed:
		return c.opError("set deadline", net.ErrClosed)
	}
	return nil
}

// LocalAddr and RemoteAddr ask the kernel each time: serve never needs them on the way of a probe.
func (c *FDConn) LocalAddr() net.Addr  { return c.addr(syscall.Getsockname) }
func (c *FDConn) RemoteAddr() net.Addr { return c.addr(syscall.Getpeername) }

func (c *FDConn) addr(get func(int) (syscall.Sockaddr, error)) net.Addr {
	var sa syscall.Sockaddr
	if c.withFD(func(fd int) { sa, _ = get(fd) }) != nil {
		return (*net.TCPAddr)(nil)
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return (*net.TCPAddr)(nil)
}

// withFD runs f with the open descriptor, whether or not the connection joined the netpoller.
func (c *FDConn) withFD(f func(fd int)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return net.ErrClosed
	case c.file != nil:
		return c.raw.Control(func(fd uintptr) { f(int(fd)) })
	}
	f(c.fd)
	return nil
}

// opError is err as net.Conn reports it.
func (c *FDConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Err: unwrapOpError(err)}
}

// waitError is opError for a read or write that waited on the netpoller, without c.mu: a file closed
// under it reports "use of closed file", which on a socket is net.ErrClosed.
func (c *FDConn) waitError(op string, err error) error {
	err = unwrapOpError(err)
	c.mu.Lock()
	if c.closed && !errors.Is(err, os.ErrDeadlineExceeded) {
		err = net.ErrClosed
	}
	c.mu.Unlock()
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}

func passed(deadline time.Time) bool { return !deadline.IsZero() && !time.Now().Before(deadline) }
