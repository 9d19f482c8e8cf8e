// Package grpcwire is the wire format under the probe's two gRPC calls (grpchealth's Check and
// workloadapi's FetchX509SVID): gRPC's length-prefixed message framing, a reader of protobuf
// fields, and the call's headers (content-type, grpc-timeout, the status codes' names). Both calls'
// messages are decoded by hand instead of linking grpc-go and protobuf into a binary that runs in
// every pod every few seconds; one codec keeps their rules the same, and the tests of both callers
// check them against the real protobuf code.
//
// The rules are protobuf's own, as google.golang.org/protobuf decodes (its internal/impl/decode.go):
// a field the message does not know is skipped; a field it knows, arriving with another wire type, is
// skipped too (the Go runtime keeps it among the unknown fields: it is no parse error); what cannot be
// walked — a bad tag or varint, field number 0 or over 2^29-1, wire type 6 or 7, a field longer than
// the message — is an error. One rule is stricter than protobuf's: a group (wire types 3 and 4,
// deprecated, never in proto3) is an error, where the Go runtime skips an unknown one.
package grpcwire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PrefixBytes is the length of gRPC's message prefix: a compressed flag and a big-endian length.
const PrefixBytes = 5

// AppendMessage appends message to dst with its gRPC prefix: not compressed, and its length.
func AppendMessage(dst, message []byte) []byte {
	dst = append(dst, 0) // not compressed
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(message)))
	return append(dst, message...)
}

// MessageComplete reports whether body holds a whole gRPC message: its prefix and the length it
// announces. It is the stop condition of reading a stream's next message.
func MessageComplete(body []byte) bool {
	return len(body) >= PrefixBytes && uint64(len(body)-PrefixBytes) >= uint64(binary.BigEndian.Uint32(body[1:PrefixBytes]))
}

// MessageBytes is the length of body's first message, prefix included: what a reader of the stream
// has consumed once it decoded that message. body must hold a whole one (MessageComplete).
func MessageBytes(body []byte) int {
	return PrefixBytes + int(binary.BigEndian.Uint32(body[1:PrefixBytes]))
}

// FirstMessage returns the protobuf message that body starts with, without its prefix, and what
// follows it. It rejects a compressed message (the probe never offers compression), one whose prefix
// announces more than maxBytes, and one cut short.
func FirstMessage(body []byte, maxBytes uint32) (message, rest []byte, err error) {
	if len(body) < PrefixBytes {
		return nil, nil, fmt.Errorf("message of %d bytes is shorter than its 5-byte prefix", len(body))
	}
	if body[0] != 0 {
		return nil, nil, errors.New("compressed message, though we offered no compression")
	}
	length := binary.BigEndian.Uint32(body[1:PrefixBytes])
	if length > maxBytes {
		return nil, nil, fmt.Errorf("message of %d bytes is too long, over the limit of %d", length, maxBytes)
	}
	if uint64(len(body)-PrefixBytes) < uint64(length) {
		return nil, nil, fmt.Errorf("message cut short: %d bytes, its prefix says %d", len(body)-PrefixBytes, length)
	}
	end := PrefixBytes + int(length)
	return body[PrefixBytes:end], body[end:], nil
}

// WireType is a protobuf wire type, as the low three bits of a field's tag give it.
type WireType uint8

// The wire types a proto3 message uses; 3 and 4 (groups), 6 and 7 are malformed here.
const (
	Varint  WireType = 0
	Fixed64 WireType = 1
	Bytes   WireType = 2
	Fixed32 WireType = 5
)

// Field is one field of a message: its number, and its value as its wire type holds it.
type Field struct {
	Number int
	Varint uint64 // a Varint field's value
	Bytes  []byte // a Bytes field's value: a string, bytes, an embedded message or a packed list
}

// Schema is what a message knows: the wire type of each of its fields, by number.
type Schema map[int]WireType

// EachField walks message and calls fn, in order, with every field that schema knows and that
// arrives with the wire type schema gives it; it skips every other field, by protobuf's rules (see
// the package comment). A malformed message, or fn's error, ends the walk with that error.
func EachField(message []byte, schema Schema, fn func(Field) error) error {
	for len(message) > 0 {
		tag, n := binary.Uvarint(message)
		if n <= 0 {
			return errors.New("malformed protobuf: bad field tag")
		}
		message = message[n:]
		number, wireType := tag>>3, WireType(tag&7)
		if number == 0 || number > 1<<29-1 { // protobuf's range of field numbers
			return fmt.Errorf("malformed protobuf: field number %d", number)
		}
		field := Field{Number: int(number)}
		switch wireType {
		case Varint:
			field.Varint, n = binary.Uvarint(message)
			if n <= 0 {
				return errors.New("malformed protobuf: bad varint")
			}
		case Fixed64:
			n = 8
		case Fixed32:
			n = 4
		case Bytes:
			length, lengthBytes := binary.Uvarint(message)
			if lengthBytes <= 0 || length > uint64(len(message)-lengthBytes) {
				return errors.New("malformed protobuf: bad length, a length-delimited field cut short")
			}
			n = lengthBytes + int(length)
			field.Bytes = message[lengthBytes:n]
		default:
			return fmt.Errorf("malformed protobuf: wire type %d", wireType)
		}
		if n > len(message) {
			return fmt.Errorf("malformed protobuf: a field of wire type %d truncated", wireType)
		}
		message = message[n:]
		if known, ok := schema[field.Number]; ok && known == wireType {
			if err := fn(field); err != nil {
				return err
			}
		}
	}
	return nil
}
