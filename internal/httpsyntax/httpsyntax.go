// Package httpsyntax is the grammar of HTTP fields (RFC 9110, section 5) that both sides of the
// binary check: the probe the -header values it sends, and serve the requests it reads.
package httpsyntax

import "strings"

// IsToken reports whether s is a non-empty RFC 9110 token: a method or a field name.
func IsToken[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// IsFieldValue reports whether s may be a field value as sent on the wire: no control character but
// horizontal tab (bytes from 0x80 on, obs-text, are allowed).
func IsFieldValue[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
