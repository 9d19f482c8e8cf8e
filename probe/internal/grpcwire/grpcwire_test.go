package grpcwire

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestAppendMessage(t *testing.T) {
	assert.Equal(t, []byte{0, 0, 0, 0, 0}, AppendMessage(nil, nil), "an empty message is its prefix")
	assert.Equal(t, []byte{9, 0, 0, 0, 0, 3, 'a', 'b', 'c'}, AppendMessage([]byte{9}, []byte("abc")), "appended to dst")
	big := bytes.Repeat([]byte{7}, 0x10203)
	assert.Equal(t, []byte{0, 0, 0x01, 0x02, 0x03}, AppendMessage(nil, big)[:PrefixBytes], "big-endian length")
}

func TestMessageComplete(t *testing.T) {
	body := AppendMessage(nil, []byte("abc"))
	for i := range body {
		assert.False(t, MessageComplete(body[:i]), "%d bytes", i)
	}
	assert.True(t, MessageComplete(body))
	assert.True(t, MessageComplete(append(body, 0)), "the next message has begun")
	assert.Equal(t, len(body), MessageBytes(append(body, AppendMessage(nil, nil)...)), "where the next message starts")
}

func TestFirstMessage(t *testing.T) {
	message, rest, err := FirstMessage(AppendMessage(AppendMessage(nil, []byte("one")), []byte("two")), 10)
	require.NoError(t, err)
	assert.Equal(t, "one", string(message))
	assert.Equal(t, AppendMessage(nil, []byte("two")), rest, "the next message")

	message, rest, err = FirstMessage(AppendMessage(nil, nil), 0)
	require.NoError(t, err)
	assert.Empty(t, message)
	assert.Empty(t, rest)

	tests := []struct {
		name    string
		body    []byte
		wantErr string
	}{
		{"nothing", nil, "message of 0 bytes is shorter than its 5-byte prefix"},
		{"four bytes", []byte{0, 0, 0, 0}, "shorter than its 5-byte prefix"},
		{"compressed", []byte{1, 0, 0, 0, 1, 0x08}, "compressed message, though we offered no compression"},
		{"over the limit", []byte{0, 0, 0, 0, 11}, "message of 11 bytes is too long, over the limit of 10"},
		{"the largest prefix", []byte{0, 0xff, 0xff, 0xff, 0xff}, "message of 4294967295 bytes is too long"},
		{"cut short", []byte{0, 0, 0, 0, 3, 'a'}, "message cut short: 1 bytes, its prefix says 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := FirstMessage(tt.body, 10)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

// walked is what EachField gave fn: a field's number and its value, as text.
type walked struct {
	Number int
	Varint uint64
	Bytes  string
}

func walk(t *testing.T, message []byte, schema Schema) []walked {
	t.Helper()
	var got []walked
	require.NoError(t, EachField(message, schema, func(f Field) error {
		got = append(got, walked{f.Number, f.Varint, string(f.Bytes)})
		return nil
	}))
	return got
}

func TestEachFieldGivesTheKnownFields(t *testing.T) {
	var message []byte
	message = protowire.AppendVarint(protowire.AppendTag(message, 1, protowire.VarintType), 300)
	message = protowire.AppendString(protowire.AppendTag(message, 2, protowire.BytesType), "two")
	message = protowire.AppendFixed32(protowire.AppendTag(message, 3, protowire.Fixed32Type), 3)
	message = protowire.AppendFixed64(protowire.AppendTag(message, 4, protowire.Fixed64Type), 4)
	message = protowire.AppendVarint(protowire.AppendTag(message, 1, protowire.VarintType), 1)
	message = protowire.AppendVarint(protowire.AppendTag(message, protowire.MaxValidNumber, protowire.VarintType), 5)

	assert.Equal(t, []walked{{1, 300, ""}, {2, 0, "two"}, {1, 1, ""}},
		walk(t, message, Schema{1: Varint, 2: Bytes}), "in order, repeated ones too")
	assert.Equal(t, []walked{{3, 0, ""}, {4, 0, ""}}, walk(t, message, Schema{3: Fixed32, 4: Fixed64}),
		"fixed-width fields are walked, their value is not read")
	assert.Empty(t, walk(t, message, Schema{}), "an empty schema knows nothing")
	assert.Empty(t, walk(t, nil, Schema{1: Varint}), "an empty message")
}

// TestEachFieldSkipsAKnownFieldOfAnotherWireType is the rule of protobuf's Go runtime: a field the
// message knows, arriving with another wire type, is an unknown field, not an error.
func TestEachFieldSkipsAKnownFieldOfAnotherWireType(t *testing.T) {
	var message []byte
	message = protowire.AppendBytes(protowire.AppendTag(message, 1, protowire.BytesType), []byte{1})
	message = protowire.AppendFixed32(protowire.AppendTag(message, 1, protowire.Fixed32Type), 2)
	message = protowire.AppendFixed64(protowire.AppendTag(message, 1, protowire.Fixed64Type), 3)
	message = protowire.AppendVarint(protowire.AppendTag(message, 1, protowire.VarintType), 4)
	message = protowire.AppendVarint(protowire.AppendTag(message, 2, protowire.VarintType), 5)
	assert.Equal(t, []walked{{1, 4, ""}}, walk(t, message, Schema{1: Varint, 2: Bytes}))
}

func TestEachFieldRejectsMalformed(t *testing.T) {
	tests := []struct {
		name    string
		message []byte
		wantErr string
	}{
		{"truncated tag", []byte{0x88}, "malformed protobuf: bad field tag"},
		{"field number 0", []byte{0x00, 0x01}, "malformed protobuf: field number 0"},
		{"field number 2^29, one past the largest", protowire.AppendVarint(protowire.AppendVarint(nil, 1<<29<<3), 1), "field number 536870912"},
		{"wire type 3 (group start)", []byte{0x0b}, "malformed protobuf: wire type 3"},
		{"wire type 4 (group end)", []byte{0x0c}, "wire type 4"},
		{"wire type 6", []byte{0x0e, 0x01}, "wire type 6"},
		{"wire type 7", []byte{0x0f, 0x01}, "wire type 7"},
		{"truncated varint", []byte{0x08}, "malformed protobuf: bad varint"},
		{"truncated varint continuation", []byte{0x08, 0x80}, "bad varint"},
		{"varint over 64 bits", []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, "bad varint"},
		{"truncated fixed64", []byte{0x11, 1, 2, 3}, "malformed protobuf: a field of wire type 1 truncated"},
		{"truncated fixed32", []byte{0x15, 1, 2}, "a field of wire type 5 truncated"},
		{"bytes longer than the message", []byte{0x12, 0x05, 1, 2}, "malformed protobuf: bad length, a length-delimited field cut short"},
		{"bytes with a huge length", []byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f}, "bad length"},
		{"bytes with a truncated length", []byte{0x12, 0x80}, "bad length"},
		{"malformed after a good field", []byte{0x08, 0x01, 0x0b}, "wire type 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The schema knows every field of every wire type: known or not, a malformed field is an error.
			err := EachField(tt.message, Schema{1: Varint, 2: Bytes}, func(Field) error { return nil })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
	t.Run("fn's error ends the walk", func(t *testing.T) {
		calls := 0
		err := EachField([]byte{0x08, 0x01, 0x08, 0x02}, Schema{1: Varint}, func(Field) error {
			calls++
			return assert.AnError
		})
		assert.Same(t, assert.AnError, err)
		assert.Equal(t, 1, calls)
	})
}

// FuzzEachField holds EachField against protowire, protobuf's own low-level reader: what we accept it
// reads as the same fields, and what it reads without groups we accept.
func FuzzEachField(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x96, 0x02, 0x12, 0x03, 'a', 'b', 'c', 0x1d, 1, 2, 3, 4, 0x21, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0x0a, 0x01, 0x01, 0x08, 0x01})
	f.Add([]byte{0x0b, 0x0c})
	f.Add([]byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f})
	schema := Schema{1: Varint, 2: Bytes, 3: Fixed32, 4: Fixed64}
	f.Fuzz(func(t *testing.T, message []byte) {
		var got []walked
		err := EachField(message, schema, func(f Field) error {
			got = append(got, walked{f.Number, f.Varint, string(f.Bytes)})
			return nil
		})
		want, groups, wantErr := protowireFields(message, schema)
		switch {
		case err == nil && wantErr != nil:
			t.Fatalf("accepted % x, which protowire rejects: %v", message, wantErr)
		case err == nil && groups:
			t.Fatalf("accepted % x, which holds a group", message)
		case err != nil && wantErr == nil && !groups:
			t.Fatalf("rejected % x, which protowire reads: %v", message, err)
		case err == nil:
			assert.Equal(t, want, got, "% x", message)
		}
	})
}

// protowireFields walks message with protowire, with proto.Unmarshal's range of field numbers, and
// returns the fields schema knows, with the wire type it gives them, and whether the message holds a
// group.
func protowireFields(message []byte, schema Schema) (fields []walked, groups bool, err error) {
	for len(message) > 0 {
		number, wireType, n := protowire.ConsumeTag(message)
		if n < 0 {
			return nil, groups, protowire.ParseError(n)
		}
		if number > protowire.MaxValidNumber {
			return nil, groups, fmt.Errorf("field number %d", number)
		}
		message = message[n:]
		groups = groups || wireType == protowire.StartGroupType || wireType == protowire.EndGroupType
		value := message
		n = protowire.ConsumeFieldValue(number, wireType, message)
		if n < 0 {
			return nil, groups, protowire.ParseError(n)
		}
		message = message[n:]
		if known, ok := schema[int(number)]; !ok || protowire.Type(known) != wireType {
			continue
		}
		field := walked{Number: int(number)}
		switch wireType {
		case protowire.VarintType:
			field.Varint, _ = protowire.ConsumeVarint(value)
		case protowire.BytesType:
			b, _ := protowire.ConsumeBytes(value)
			field.Bytes = string(b)
		}
		fields = append(fields, field)
	}
	return fields, groups, nil
}
