package grpcwire

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTimeout(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "1n"},
		{0, "1n"},
		{time.Microsecond, "1m"},
		{800 * time.Millisecond, "800m"},
		{24 * time.Hour, "86400000m"},
		{1e8 * time.Millisecond, "100000S"},
		{1 << 62, "99999999S"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Timeout(tt.d), "Timeout(%s)", tt.d)
		assert.LessOrEqual(t, len(tt.want), 9, "at most 8 digits and a unit")
	}
}

func TestIsContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpcx": false, "application/json": false, "": false, "application/grp": false,
	} {
		assert.Equal(t, want, IsContentType(ct), ct)
	}
}

func TestCodeName(t *testing.T) {
	assert.Equal(t, "OK", CodeName(0))
	assert.Equal(t, "NOT_FOUND", CodeName(5))
	assert.Equal(t, "UNAUTHENTICATED", CodeName(16))
	assert.Equal(t, "", CodeName(17))
	assert.Equal(t, "", CodeName(-1))
}
