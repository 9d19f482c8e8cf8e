package printable

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "503 Service Unavailable", 100, "503 Service Unavailable"},
		{"control characters", "a\nb\x1b[1m\x7f\u0085\u2028", 100, "a?b?[1m???"},
		{"invalid UTF-8", "a\xffb", 100, "a?b"},
		{"cut and marked", strings.Repeat("x", 20), 10, "xxxxxxx…"},
		{"cut on a rune boundary", "ééééé", 8, "éé…"},
		{"no room", "abc", 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Sanitize(tt.in, tt.max)
			assert.Equal(t, tt.want, got)
			assert.LessOrEqual(t, len(got), max(tt.max, 0))
			assert.True(t, utf8.ValidString(got))
		})
	}
}
