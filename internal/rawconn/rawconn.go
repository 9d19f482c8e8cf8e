// Package rawconn reads and writes a socket with raw system calls made inside its syscall.RawConn
// callbacks, for `health-check serve`, which is idle between the few steps of every probe it answers.
//
// Why: a read or write through net.Conn enters the Go runtime's syscall state, and the first one
// after all Ps were idle wakes the runtime's system monitor (sysmon) from its deep sleep; sysmon then
// naps in 20 µs steps until it finds the process idle again. serve goes idle several times per probe
// (waiting for the kubelet's request, for the upstream's answer), so every probe woke sysmon several
// times: measured, half of serve's context switches per probe. A socket here is non-blocking (the
// runtime's netpoller waits for it), so a read or write returns at once and needs no syscall state;
// RawConn.Read and RawConn.Write wait for readiness on the netpoller, deadlines included, exactly as
// net.Conn does. See bench/README.md for the measurement.
//
// The same holds for every other system call of a probe: the accept, the close, and the stat of the
// TLS files at every check each woke sysmon, as long as one of them did (bench/README.md: with all
// of them raw, serve's CPU per probe fell by a third, its context switches by half). WrapListener's
// Listener accepts raw, and its FDConn stays out of the netpoller, closing raw, until it has to wait;
// Stat is os.Stat's fstatat(2), raw.
//
// Linux only: the raw system calls of other systems differ. Elsewhere (raw_other.go, accept_other.go)
// Wrap and WrapListener return what they get, and Quiet peeks through the syscall package on other
// Unix systems and takes every connection as quiet on Windows, which has no such peek (peek_other.go).
package rawconn

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Conn is a net.Conn whose Read and Write are raw system calls. Everything else is the socket's own.
type Conn struct {
	socket socket
	raw    syscall.RawConn
}

// socket is what Conn needs of the connection it wraps: *net.TCPConn and *net.UnixConn are both.
type socket interface {
	net.Conn
	syscall.Conn
}

// Wrap returns conn reading and writing with raw system calls, or conn itself when it is not a socket
// of the netpoller's (a *tls.Conn, a pipe) or the system is not Linux.
func Wrap(conn net.Conn) net.Conn {
	s, ok := conn.(socket)
	if !ok || !supported {
		return conn
	}
	raw, err := s.SyscallConn()
	if err != nil {
		return conn
	}
	return &Conn{socket: s, raw: raw}
}

// Read reads what the socket holds, waiting on the netpoller until it holds something, the peer
// closes (io.EOF) or the read deadline passes.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := read(c.raw, p)
	if err != nil && err != io.EOF {
		return n, c.opError("read", err)
	}
	return n, err
}

// Write writes all of p, waiting on the netpoller while the socket's buffer is full, until the write
// deadline passes.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := write(c.raw, p)
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// read is Conn.Read through raw: its error is io.EOF or the cause, for the caller's *net.OpError.
func read(raw syscall.RawConn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := raw.Read(func(fd uintptr) bool {
		n, errno = rawRead(fd, p)
		return errno != syscall.EAGAIN // false: wait until the socket is readable, then call again
	})
	switch {
	case err != nil:
		return 0, unwrapOpError(err)
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write is Conn.Write through raw: its error is the cause, for the caller's *net.OpError.
func write(raw syscall.RawConn, p []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := raw.Write(func(fd uintptr) bool {
		for written < len(p) {
			n, e := rawWrite(fd, p[written:])
			if e == syscall.EAGAIN {
				return false // wait until the socket is writable, then go on
			}
			if e != 0 {
				errno = e
				return true
			}
			written += n
		}
		return true
	})
	switch {
	case err != nil:
		return written, unwrapOpError(err)
	case errno != 0:
		return written, os.NewSyscallError("write", errno)
	}
	return written, nil
}

// opError is err as net.Conn reports it: a *net.OpError of op, whose Err is the cause (a deadline
// that passed is os.ErrDeadlineExceeded, a closed connection net.ErrClosed), not RawConn's
// "raw-read" error.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.socket.LocalAddr().Network(), Source: c.socket.LocalAddr(), Addr: c.socket.RemoteAddr(), Err: unwrapOpError(err)}
}

// unwrapOpError is the cause of a RawConn's error: the Err of its *net.OpError.
func unwrapOpError(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Err
	}
	return err
}

// Quiet reports whether conn is still open with nothing to read, without waiting: a peer that closed
// it, or sent something, makes it false. A connection that is not a socket is taken as quiet.
func Quiet(conn net.Conn) bool {
	s, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := s.SyscallConn()
	if err != nil {
		return false
	}
	quiet := true
	_ = raw.Read(func(fd uintptr) bool {
		quiet = nothingToRead(fd)
		return true // never wait for readiness
	})
	return quiet
}

func (c *Conn) Close() error                       { return c.socket.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.socket.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.socket.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.socket.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.socket.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.socket.SetWriteDeadline(t) }

// SyscallConn is the socket's, for a caller that peeks at it.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// CloseWrite shuts down the writing side of the socket, when it is a TCP or unix connection.
func (c *Conn) CloseWrite() error {
	if s, ok := c.socket.(interface{ CloseWrite() error }); ok {
		return s.CloseWrite()
	}
	return errors.ErrUnsupported
}
