package workloadapi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// frame adds gRPC's message prefix.
func frame(msg []byte) []byte {
	out := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func sampleResponse() *workload.X509SVIDResponse {
	return &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{
			{SpiffeId: "spiffe://example.org/a", X509Svid: []byte("chain a"), X509SvidKey: []byte("key a"), Bundle: []byte("bundle"), Hint: "internal"},
			{SpiffeId: "spiffe://example.org/b", X509Svid: []byte("chain b"), X509SvidKey: []byte("key b")},
		},
		Crl:              [][]byte{[]byte("crl 1"), []byte("crl 2")},
		FederatedBundles: map[string][]byte{"spiffe://example.com": []byte("foreign"), "spiffe://example.net": nil},
	}
}

// assertSame checks our decoding against the generated message.
func assertSame(t *testing.T, want *workload.X509SVIDResponse, got *X509SVIDResponse) {
	t.Helper()
	require.Len(t, got.SVIDs, len(want.Svids))
	for i, svid := range want.Svids {
		assert.Equal(t, svid.SpiffeId, got.SVIDs[i].SPIFFEID)
		assert.Equal(t, svid.X509Svid, nilIfEmpty(got.SVIDs[i].Certificates))
		assert.Equal(t, svid.X509SvidKey, nilIfEmpty(got.SVIDs[i].Key))
		assert.Equal(t, svid.Bundle, nilIfEmpty(got.SVIDs[i].Bundle))
		assert.Equal(t, svid.Hint, got.SVIDs[i].Hint)
	}
	require.Len(t, got.CRLs, len(want.Crl))
	for i := range want.Crl {
		assert.True(t, bytes.Equal(want.Crl[i], got.CRLs[i]))
	}
	require.Len(t, got.FederatedBundles, len(want.FederatedBundles))
	for domain, bundle := range want.FederatedBundles {
		require.Contains(t, got.FederatedBundles, domain)
		assert.True(t, bytes.Equal(bundle, got.FederatedBundles[domain]))
	}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// TestDecodeResponseMatchesProtobuf: what go-spiffe's generated code encodes, we decode, unknown
// fields of a newer agent included.
func TestDecodeResponseMatchesProtobuf(t *testing.T) {
	want := sampleResponse()
	msg, err := proto.Marshal(want)
	require.NoError(t, err)
	got, err := DecodeResponse(frame(msg))
	require.NoError(t, err)
	assertSame(t, want, got)

	// A newer agent's fields, of every wire type, are skipped.
	newer := append([]byte(nil), msg...)
	newer = protowire.AppendTag(newer, 9, protowire.VarintType)
	newer = protowire.AppendVarint(newer, 1<<40)
	newer = protowire.AppendTag(newer, 10, protowire.Fixed64Type)
	newer = protowire.AppendFixed64(newer, 7)
	newer = protowire.AppendTag(newer, 11, protowire.Fixed32Type)
	newer = protowire.AppendFixed32(newer, 7)
	newer = protowire.AppendTag(newer, 12, protowire.BytesType)
	newer = protowire.AppendBytes(newer, []byte("later"))
	got, err = DecodeResponse(frame(newer))
	require.NoError(t, err)
	assertSame(t, want, got)

	got, err = DecodeResponse(frame(nil))
	require.NoError(t, err, "an empty response is a valid message")
	assert.Empty(t, got.SVIDs)
}

func TestRequestIsAnEmptyMessage(t *testing.T) {
	msg, err := proto.Marshal(&workload.X509SVIDRequest{})
	require.NoError(t, err)
	assert.Equal(t, frame(msg), Request)
}

func TestDecodeResponseErrors(t *testing.T) {
	valid, err := proto.Marshal(sampleResponse())
	require.NoError(t, err)
	tests := map[string]struct {
		body []byte
		want string
	}{
		"shorter than the prefix": {body: []byte{0, 0, 0}, want: "shorter than its 5-byte prefix"},
		"compressed":              {body: append([]byte{1}, frame(valid)[1:]...), want: "compressed"},
		"cut short":               {body: frame(valid)[:20], want: "cut short"},
		"over the limit":          {body: []byte{0, 0x7f, 0xff, 0xff, 0xff}, want: "over the limit"},
		"a bad tag":               {body: frame([]byte{0xff}), want: "bad field tag"},
		"field number 0":          {body: frame([]byte{0x02, 0x00}), want: "field number 0"},
		"a length past the end":   {body: frame([]byte{0x0a, 0x05, 0x01}), want: "cut short"},
		"a group":                 {body: frame([]byte{0x0b}), want: "wire type 3"},
		"an SPIFFE ID not UTF-8":  {body: frame([]byte{0x0a, 0x03, 0x0a, 0x01, 0xff}), want: "spiffe_id is not UTF-8"},
		"a bad SVID":              {body: frame([]byte{0x0a, 0x02, 0x08, 0x80}), want: "svids[0]: malformed protobuf: bad varint"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeResponse(tt.body)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// FuzzDecodeResponse: no input panics or reads past its end, and what we accept, protobuf's own
// decoder reads the same.
func FuzzDecodeResponse(f *testing.F) {
	valid, err := proto.Marshal(sampleResponse())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(frame(valid))
	f.Add(frame(nil))
	f.Add(frame([]byte{0x0a, 0x05, 0x01}))
	f.Add(frame([]byte{0x1a, 0x04, 0x0a, 0x02, 'a', 'b'}))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeResponse(body)
		if err != nil {
			return
		}
		n := binary.BigEndian.Uint32(body[1:5])
		var want workload.X509SVIDResponse
		if err := proto.Unmarshal(body[5:5+n], &want); err != nil {
			t.Fatalf("we accepted what protobuf rejects (%v): %x", err, body)
		}
		assertSame(t, &want, got)
	})
}
