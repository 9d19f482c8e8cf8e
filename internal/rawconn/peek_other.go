//go:build !unix

package rawconn

// nothingToRead cannot peek here (Windows has no non-blocking MSG_PEEK on the runtime's sockets), so
// a kept connection is taken as quiet, as Quiet takes one that is not a socket: its user redials when
// the first read on it fails.
func nothingToRead(fd uintptr) bool { return true }
