package httpsyntax

import (
	"net/http"
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

// TestStatusText: every phrase the table names is net/http's (413 by RFC 9110's name, where net/http
// keeps RFC 7231's "Request Entity Too Large"), and a status it does not name has none.
func TestStatusText(t *testing.T) {
	named := 0
	for status := 100; status < 600; status++ {
		if text := StatusText(status); text != "" {
			if status != 413 {
				assert.Equal(t, http.StatusText(status), text, "%d", status)
			}
			named++
		}
	}
	assert.Equal(t, 24, named, "the statuses named")
	assert.Equal(t, "Content Too Large", StatusText(413))
	assert.Empty(t, StatusText(299))
	assert.Empty(t, StatusText(-1))
}
