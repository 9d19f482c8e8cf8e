// Package grpchealth is the wire format of the gRPC health protocol (grpc.health.v1): the request and
// response messages. Each has one field, so they are encoded here by hand, on grpcwire's framing and
// protobuf rules, instead of linking grpc-go and protobuf into a binary that runs in every pod every
// few seconds; the tests check them against the real protobuf code.
package grpchealth

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpcwire"
)

// CheckPath is the HTTP/2 :path of grpc.health.v1.Health/Check.
const CheckPath = "/grpc.health.v1.Health/Check"

// MaxMessageBytes bounds the answer we read: a HealthCheckResponse is 2 bytes.
const MaxMessageBytes = 4 << 10

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

// EncodeRequest is the length-prefixed gRPC message of HealthCheckRequest{service}: field 1, a string,
// omitted when empty as proto3 does.
func EncodeRequest(service string) []byte {
	var message []byte
	if service != "" {
		message = make([]byte, 0, 1+binary.MaxVarintLen64+len(service))
		message = append(message, 0x0a) // field 1, wire type 2 (length-delimited)
		message = binary.AppendUvarint(message, uint64(len(service)))
		message = append(message, service...)
	}
	return grpcwire.AppendMessage(make([]byte, 0, grpcwire.PrefixBytes+len(message)), message)
}

// responseSchema is HealthCheckResponse: status = 1, an enum.
var responseSchema = grpcwire.Schema{1: grpcwire.Varint}

// DecodeResponse reads one length-prefixed gRPC message holding a HealthCheckResponse and returns its
// status. The answer to a unary call is that one message, and nothing after it.
func DecodeResponse(frame []byte) (ServingStatus, error) {
	message, rest, err := grpcwire.FirstMessage(frame, MaxMessageBytes)
	if err != nil {
		return 0, err
	}
	if len(rest) > 0 {
		return 0, fmt.Errorf("message is %d bytes, its prefix says %d", len(frame)-grpcwire.PrefixBytes, len(message))
	}
	status := Unknown
	err = grpcwire.EachField(message, responseSchema, func(f grpcwire.Field) error {
		status = ServingStatus(int32(f.Varint)) // the last one wins, as protobuf has it
		return nil
	})
	return status, err
}
