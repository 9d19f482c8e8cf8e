//go:build !linux

package serve

import "syscall"

// deferAccept does nothing here: TCP_DEFER_ACCEPT is Linux's.
func deferAccept(network, address string, c syscall.RawConn) error { return nil }

// openFileLimit is unknown here: the connections are bounded by MaxConnections alone.
func openFileLimit() uint64 { return 0 }
