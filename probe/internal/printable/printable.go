// Package printable makes text from a server safe to print on one line: the probe's failure line, and
// the wire packages' errors that end up in it.
package printable

import (
	"strings"
	"unicode/utf8"
)

// Sanitize makes s safe and short enough for one output line: control characters (from a server's
// status text, body or error) become '?', invalid UTF-8 is replaced, and a result over max bytes is cut
// on a rune boundary and marked with "…".
func Sanitize(s string, max int) string {
	if max < len("…") {
		return ""
	}
	var b strings.Builder
	cut := -1 // where s is cut, with room for "…", if it turns out too long
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			r = '?'
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029':
			r = '?'
		}
		size := utf8.RuneLen(r)
		if cut < 0 && b.Len()+size > max-len("…") {
			cut = b.Len()
		}
		if b.Len()+size > max {
			return b.String()[:cut] + "…"
		}
		b.WriteRune(r)
	}
	return b.String()
}
