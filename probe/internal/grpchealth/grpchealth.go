// Package grpchealth is the wire format of the gRPC health protocol (grpc.health.v1): the request and
// response messages, their length-prefixed framing, the status names a failure line quotes, and the
// grpc-timeout header. The request and the response have one field each, so they are encoded here by
// hand instead of linking grpc-go and protobuf into a binary that runs in every pod every few seconds;
// the tests check them against the real protobuf code.
package grpchealth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// CheckPath is the HTTP/2 :path of grpc.health.v1.Health/Check.
const CheckPath = "/grpc.health.v1.Health/Check"

// MaxMessageBytes bounds the answer we read: a HealthCheckResponse is 2 bytes.
const MaxMessageBytes = 4 << 10

// PrefixBytes is the length of gRPC's message prefix: a compressed flag and a big-endian length.
const PrefixBytes = 5

// ServingStatus is grpc.health.v1.HealthCheckResponse.ServingStatus.
type ServingStatus int

// The values of ServingStatus, as health.proto numbers them.
const (
	Unknown        ServingStatus = 0
	Serving        ServingStatus = 1
	NotServing     ServingStatus = 2
	ServiceUnknown ServingStatus = 3
)

func (s ServingStatus) String() string {
	switch s {
	case Unknown:
		return "UNKNOWN"
	case Serving:
		return "SERVING"
	case NotServing:
		return "NOT_SERVING"
	case ServiceUnknown:
		return "SERVICE_UNKNOWN"
	}
	return "ServingStatus(" + strconv.Itoa(int(s)) + ")"
}

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

// EncodeRequest is the length-prefixed gRPC message of HealthCheckRequest{service}: field 1, a string,
// omitted when empty as proto3 does.
func EncodeRequest(service string) []byte {
	var message []byte
	if service != "" {
		message = append(message, 0x0a) // field 1, wire type 2 (length-delimited)
		message = binary.AppendUvarint(message, uint64(len(service)))
		message = append(message, service...)
	}
	frame := make([]byte, PrefixBytes, PrefixBytes+len(message))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(message))) // frame[0] = 0: not compressed
	return append(frame, message...)
}

// DecodeResponse reads one length-prefixed gRPC message holding a HealthCheckResponse and returns its
// status (field 1, an enum). Unknown fields are skipped, as proto3 requires.
func DecodeResponse(frame []byte) (ServingStatus, error) {
	if len(frame) < PrefixBytes {
		return 0, errors.New("message shorter than its 5-byte prefix")
	}
	if frame[0] != 0 {
		return 0, errors.New("compressed message (none was asked for)")
	}
	length := binary.BigEndian.Uint32(frame[1:PrefixBytes])
	if length > MaxMessageBytes {
		return 0, fmt.Errorf("message of %d bytes is too long for a health answer", length)
	}
	message := frame[PrefixBytes:]
	if uint32(len(message)) != length {
		return 0, fmt.Errorf("message is %d bytes, its prefix says %d", len(message), length)
	}
	status := Unknown
	for len(message) > 0 {
		key, n := binary.Uvarint(message)
		if n <= 0 {
			return 0, errors.New("bad field key")
		}
		message = message[n:]
		field, wireType := key>>3, key&7
		if field == 0 || field > 1<<29-1 { // protobuf's range of field numbers
			return 0, fmt.Errorf("field number %d", field)
		}
		var value uint64
		switch wireType {
		case 0: // varint
			value, n = binary.Uvarint(message)
			if n <= 0 {
				return 0, errors.New("bad varint")
			}
		case 1: // 64-bit
			n = 8
		case 2: // length-delimited
			var size uint64
			size, n = binary.Uvarint(message)
			if n <= 0 || size > uint64(len(message)-n) {
				return 0, errors.New("bad length")
			}
			n += int(size)
		case 5: // 32-bit
			n = 4
		default:
			return 0, fmt.Errorf("unsupported wire type %d", wireType)
		}
		if n > len(message) {
			return 0, errors.New("truncated field")
		}
		message = message[n:]
		if field == 1 {
			if wireType != 0 {
				return 0, fmt.Errorf("status has wire type %d, want 0", wireType)
			}
			status = ServingStatus(int32(value))
		}
	}
	return status, nil
}
