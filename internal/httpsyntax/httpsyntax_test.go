package httpsyntax

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsToken(t *testing.T) {
	for _, ok := range []string{"GET", "X-Request-Id", "a!#$%&'*+-.^_`|~9"} {
		assert.True(t, IsToken(ok), "%q", ok)
		assert.True(t, IsToken([]byte(ok)), "%q as bytes", ok)
	}
	for _, bad := range []string{"", "X Header", "X:", "Ünïcode", "tab\t", "a/b", "(x)", "\x7f"} {
		assert.False(t, IsToken(bad), "%q", bad)
		assert.False(t, IsToken([]byte(bad)), "%q as bytes", bad)
	}
}

func TestIsFieldValue(t *testing.T) {
	for _, ok := range []string{"", "text/plain; charset=utf-8", "a\tb", "ünïcode", "\x80\xff"} {
		assert.True(t, IsFieldValue(ok), "%q", ok)
		assert.True(t, IsFieldValue([]byte(ok)), "%q as bytes", ok)
	}
	for _, bad := range []string{"a\r\nInjected: 1", "nul\x00", "del\x7f", "\x1b[31m"} {
		assert.False(t, IsFieldValue(bad), "%q", bad)
		assert.False(t, IsFieldValue([]byte(bad)), "%q as bytes", bad)
	}
}
