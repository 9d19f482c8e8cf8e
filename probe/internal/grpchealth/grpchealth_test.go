package grpchealth

import (
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// frame is message with gRPC's 5-byte prefix: uncompressed, big-endian length.
func frame(message []byte) []byte {
	out := make([]byte, 5, 5+len(message))
	binary.BigEndian.PutUint32(out[1:], uint32(len(message)))
	return append(out, message...)
}

var serviceNames = []struct {
	name    string
	service string
}{
	{"empty (the whole server)", ""},
	{"ascii", "grpc.health.v1.Health"},
	{"one byte", "x"},
	{"127 bytes, the longest one-byte length", strings.Repeat("a", 127)},
	{"128 bytes, a two-byte length", strings.Repeat("b", 128)},
	{"300 bytes", strings.Repeat("package.Service/", 18) + "abcdefghijkl"},
	{"17000 bytes, a three-byte length", strings.Repeat("c", 17000)},
	{"unicode", "сервис.健康/✓"},
}

func TestEncodeRequestMatchesProtobuf(t *testing.T) {
	for _, tt := range serviceNames {
		t.Run(tt.name, func(t *testing.T) {
			want, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: tt.service})
			require.NoError(t, err)
			got := EncodeRequest(tt.service)
			require.GreaterOrEqual(t, len(got), 5)
			assert.Equal(t, byte(0), got[0], "compressed flag")
			assert.Equal(t, uint32(len(got)-5), binary.BigEndian.Uint32(got[1:5]), "length prefix")
			assert.Equal(t, want, got[5:], "message bytes")

			var decoded healthpb.HealthCheckRequest
			require.NoError(t, proto.Unmarshal(got[5:], &decoded))
			assert.Equal(t, tt.service, decoded.GetService())
		})
	}
}

func TestDecodeResponseMatchesProtobuf(t *testing.T) {
	statuses := []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_UNKNOWN,
		healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING,
		healthpb.HealthCheckResponse_SERVICE_UNKNOWN,
		7,  // a value a newer health.proto might add
		-1, // negative enums are 10-byte varints
	}
	for _, status := range statuses {
		t.Run(status.String(), func(t *testing.T) {
			message, err := proto.Marshal(&healthpb.HealthCheckResponse{Status: status})
			require.NoError(t, err)
			got, err := DecodeResponse(frame(message))
			require.NoError(t, err)
			assert.Equal(t, int32(status), int32(got))
			if status >= 0 && status <= 3 {
				assert.Equal(t, status.String(), got.String())
			}
		})
	}
	t.Run("names of the probe's constants", func(t *testing.T) {
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING.String(), Serving.String())
		assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING.String(), NotServing.String())
		assert.Equal(t, healthpb.HealthCheckResponse_SERVICE_UNKNOWN.String(), ServiceUnknown.String())
		assert.Equal(t, healthpb.HealthCheckResponse_UNKNOWN.String(), Unknown.String())
		assert.Equal(t, "ServingStatus(7)", ServingStatus(7).String())
	})
}

func TestDecodeResponseSkipsUnknownFields(t *testing.T) {
	status := func(b []byte, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), v)
	}
	unknown := func(b []byte) []byte {
		b = protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.VarintType), 1<<40)
		b = protowire.AppendFixed64(protowire.AppendTag(b, 3, protowire.Fixed64Type), 0x0a01020304050607)
		b = protowire.AppendBytes(protowire.AppendTag(b, 4, protowire.BytesType), []byte{0x08, 0x02, 0x0a})
		b = protowire.AppendFixed32(protowire.AppendTag(b, 5, protowire.Fixed32Type), 0x08020802)
		b = protowire.AppendVarint(protowire.AppendTag(b, protowire.MaxValidNumber, protowire.VarintType), 2)
		return b
	}
	tests := []struct {
		name    string
		message []byte
		want    ServingStatus
	}{
		{"unknown fields before the status", status(unknown(nil), 1), Serving},
		{"unknown fields after the status", unknown(status(nil, 2)), NotServing},
		{"only unknown fields", unknown(nil), Unknown},
		{"status repeated: the last wins", status(status(nil, 2), 1), Serving},
		{"non-minimal varint", []byte{0x08, 0x81, 0x80, 0x00}, Serving},
		{"empty message", nil, Unknown},
		// A known field with another wire type is an unknown field to protobuf's Go runtime, not an
		// error: the status read before it stands.
		{"status as bytes", status([]byte{0x0a, 0x01, 0x01}, 1), Serving},
		{"status as bytes after the status", append(status(nil, 1), 0x0a, 0x01, 0x02), Serving},
		{"status as fixed32 only", []byte{0x0d, 1, 0, 0, 0}, Unknown},
		{"status as fixed64 after the status", append(status(nil, 2), 0x09, 1, 0, 0, 0, 0, 0, 0, 0), NotServing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want healthpb.HealthCheckResponse
			require.NoError(t, proto.Unmarshal(tt.message, &want), "the test's message must be valid protobuf")
			require.Equal(t, int32(tt.want), int32(want.GetStatus()), "protobuf disagrees with the test")
			got, err := DecodeResponse(frame(tt.message))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDecodeResponseRejectsMalformed(t *testing.T) {
	long := make([]byte, 5+5000)
	binary.BigEndian.PutUint32(long[1:5], 5000)
	tests := []struct {
		name    string
		frame   []byte
		wantErr string
	}{
		{"nothing", nil, "shorter than its 5-byte prefix"},
		{"four bytes", []byte{0, 0, 0, 0}, "shorter than its 5-byte prefix"},
		{"compressed", []byte{1, 0, 0, 0, 2, 0x08, 0x01}, "compressed"},
		{"prefix longer than the message", []byte{0, 0, 0, 0, 3, 0x08, 0x01}, "prefix says 3"},
		{"prefix shorter than the message", []byte{0, 0, 0, 0, 1, 0x08, 0x01}, "prefix says 1"},
		{"two messages", []byte{0, 0, 0, 0, 2, 0x08, 0x01, 0, 0, 0, 0, 2, 0x08, 0x01}, "prefix says 2"},
		{"huge prefix", []byte{0, 0xff, 0xff, 0xff, 0xff}, "too long"},
		{"message over the limit", long, "too long"},
		{"truncated key", frame([]byte{0x88}), "bad field tag"},
		{"field number 0", frame([]byte{0x00, 0x01}), "field number 0"},
		{"field number 2^29, one past the largest", frame(protowire.AppendVarint(protowire.AppendVarint(nil, 1<<29<<3), 1)), "field number 536870912"},
		{"wire type 3 (group start)", frame([]byte{0x0b}), "wire type 3"},
		{"wire type 4 (group end)", frame([]byte{0x0c}), "wire type 4"},
		{"wire type 6", frame([]byte{0x0e, 0x01}), "wire type 6"},
		{"wire type 7", frame([]byte{0x0f, 0x01}), "wire type 7"},
		{"truncated status varint", frame([]byte{0x08}), "bad varint"},
		{"truncated status varint continuation", frame([]byte{0x08, 0x80}), "bad varint"},
		{"varint over 64 bits", frame([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}), "bad varint"},
		{"truncated fixed64", frame([]byte{0x11, 1, 2, 3}), "truncated"},
		{"truncated fixed32", frame([]byte{0x15, 1, 2}), "truncated"},
		{"bytes longer than the message", frame([]byte{0x12, 0x05, 1, 2}), "bad length"},
		{"bytes with a huge length", frame([]byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f}), "bad length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeResponse(tt.frame)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

// The fuzz targets below run their seeds (f.Add and testdata/fuzz/<name>/) as ordinary tests with
// `go test`; `go test -run '^$' -fuzz '^FuzzName$' -fuzztime 10s ./probe/internal/grpchealth` searches
// further.

func FuzzDecodeResponse(f *testing.F) {
	for _, status := range []healthpb.HealthCheckResponse_ServingStatus{0, 1, 2, 3, 7, -1} {
		message, err := proto.Marshal(&healthpb.HealthCheckResponse{Status: status})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame(message))
	}
	withUnknown := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), []byte("x"))
	withUnknown = protowire.AppendFixed64(protowire.AppendTag(withUnknown, 3, protowire.Fixed64Type), 1)
	withUnknown = protowire.AppendFixed32(protowire.AppendTag(withUnknown, 5, protowire.Fixed32Type), 1)
	f.Add(frame(protowire.AppendVarint(protowire.AppendTag(withUnknown, 1, protowire.VarintType), 1)))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff})
	f.Add(frame([]byte{0x08, 0x80}))
	f.Add(frame([]byte{0x0b, 0x0c}))
	f.Add(frame([]byte{0x0a, 0x01, 0x01}))

	f.Fuzz(func(t *testing.T, data []byte) {
		status, err := DecodeResponse(data)
		if err != nil {
			return
		}
		// Accepted: a well-formed frame whose message protobuf reads the same way.
		if len(data) < 5 || data[0] != 0 || int(uint32(data[1])<<24|uint32(data[2])<<16|uint32(data[3])<<8|uint32(data[4])) != len(data)-5 {
			t.Fatalf("accepted a frame with a bad prefix: % x", data)
		}
		var want healthpb.HealthCheckResponse
		if err := proto.Unmarshal(data[5:], &want); err != nil {
			t.Fatalf("accepted % x as %s, but protobuf rejects it: %v", data, status, err)
		}
		if int32(status) != int32(want.GetStatus()) {
			t.Fatalf("decoded % x as %d, protobuf as %d", data, int32(status), int32(want.GetStatus()))
		}
	})
}

func FuzzEncodeRequest(f *testing.F) {
	for _, tt := range serviceNames {
		f.Add(tt.service)
	}
	f.Fuzz(func(t *testing.T, service string) {
		got := EncodeRequest(service)
		if len(got) < 5 || got[0] != 0 || int(uint32(got[1])<<24|uint32(got[2])<<16|uint32(got[3])<<8|uint32(got[4])) != len(got)-5 {
			t.Fatalf("bad prefix for %q: % x", service, got[:min(len(got), 5)])
		}
		if !utf8.ValidString(service) {
			return // protobuf refuses to marshal or unmarshal a proto3 string that is not UTF-8
		}
		var decoded healthpb.HealthCheckRequest
		if err := proto.Unmarshal(got[5:], &decoded); err != nil || decoded.GetService() != service {
			t.Fatalf("protobuf reads %q as %q (%v)", service, decoded.GetService(), err)
		}
		want, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
		if err != nil || string(want) != string(got[5:]) {
			t.Fatalf("encoding of %q: got % x, protobuf % x (%v)", service, got[5:], want, err)
		}
	})
}
