//go:build !linux

package rawconn

import "net"

// WrapListener returns l as it is: accepting through raw system calls is Linux's (accept_linux.go).
func WrapListener(l net.Listener) net.Listener { return l }
