package grpcwire

import (
	"strconv"
	"time"
)

// The headers of a gRPC call over HTTP/2 that both of the probe's calls read or send: what says the
// answer is gRPC, the deadline the server should keep, and the status a failure line names.

// codeNames are the canonical names of gRPC status codes, for the failure line.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// CodeName is the canonical name of a gRPC status code (NOT_FOUND), or "" for one it does not know.
func CodeName(code int) string {
	if code >= 0 && code < len(codeNames) {
		return codeNames[code]
	}
	return ""
}

// IsContentType reports whether ct is a gRPC content-type: application/grpc, alone or with a
// +format or ;parameters.
func IsContentType(ct string) bool {
	return ct == "application/grpc" || (len(ct) > 16 && ct[:16] == "application/grpc" && (ct[16] == '+' || ct[16] == ';'))
}

// Timeout encodes d as a grpc-timeout header value: at most 8 digits and a unit.
func Timeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	if ms := d.Milliseconds(); ms < 1e8 {
		return strconv.FormatInt(max(ms, 1), 10) + "m"
	}
	return strconv.FormatInt(min(int64(d/time.Second), 1e8-1), 10) + "S"
}
