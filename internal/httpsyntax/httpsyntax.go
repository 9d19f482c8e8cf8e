// Package httpsyntax is what both sides of the binary know of HTTP's text (RFC 9110): the grammar of
// fields (section 5), which the probe checks in the -header values it sends and serve in the requests
// it reads, and the statuses' reason phrases, which serve writes and the probe's failure line quotes.
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

// StatusText is the reason phrase of an HTTP status (RFC 9110, section 15), or "" for one it does not
// name: the statuses serve sends, and those a probe meets on a server or proxy, for HTTP/2 answers,
// which carry no phrase of their own.
func StatusText(status int) string {
	switch status {
	case 200:
		return "OK"
	case 204:
		return "No Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 413:
		return "Content Too Large"
	case 415:
		return "Unsupported Media Type"
	case 421:
		return "Misdirected Request"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}
