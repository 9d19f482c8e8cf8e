// Package workloadapi is the wire format of the one SPIFFE Workload API call the probe makes,
// SpiffeWorkloadAPI/FetchX509SVID: its empty request and the first X509SVIDResponse of its stream,
// decoded by hand from protobuf, as grpchealth does for the health call, instead of linking grpc-go,
// protobuf and go-spiffe into a binary that runs in every pod every few seconds. The tests check it
// against go-spiffe's generated code and its own Workload API client.
//
// The messages, from go-spiffe's proto/spiffe/workload/workload.proto:
//
//	message X509SVIDRequest {}
//	message X509SVIDResponse {
//	    repeated X509SVID svids = 1;
//	    repeated bytes crl = 2;
//	    map<string, bytes> federated_bundles = 3;
//	}
//	message X509SVID {
//	    string spiffe_id = 1;
//	    bytes x509_svid = 2;      // ASN.1 DER certificates, concatenated, leaf first
//	    bytes x509_svid_key = 3;  // PKCS #8 DER
//	    bytes bundle = 4;         // ASN.1 DER CA certificates, concatenated
//	    string hint = 5;
//	}
package workloadapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// FetchX509SVIDPath is the HTTP/2 :path of SpiffeWorkloadAPI/FetchX509SVID (the service has no
// protobuf package).
const FetchX509SVIDPath = "/SpiffeWorkloadAPI/FetchX509SVID"

// SecurityHeader is the metadata every Workload API call carries, with the value "true": the SPIFFE
// Workload API standard requires it, and agents (SPIRE's among them) refuse calls without it, so that
// a server-side request forgery cannot reach the agent through a plain HTTP client.
const SecurityHeader = "workload.spiffe.io"

// MaxMessageBytes bounds the response we read: an SVID chain, its key and bundle are a few KiB, and
// federated bundles may add a few dozen CA certificates each.
const MaxMessageBytes = 4 << 20

// prefixBytes is gRPC's message prefix: a compressed flag and a big-endian length.
const prefixBytes = 5

// Request is the framed, empty X509SVIDRequest.
var Request = []byte{0, 0, 0, 0, 0}

// X509SVID is one SVID of a response.
type X509SVID struct {
	SPIFFEID     string
	Certificates []byte // ASN.1 DER certificates, concatenated, leaf first
	Key          []byte // PKCS #8 DER
	Bundle       []byte // ASN.1 DER CA certificates of the SVID's trust domain, concatenated
	Hint         string
}

// X509SVIDResponse is one message of the FetchX509SVID stream.
type X509SVIDResponse struct {
	SVIDs            []X509SVID
	CRLs             [][]byte
	FederatedBundles map[string][]byte // keyed by trust domain ID (spiffe://example.org)
}

// MessageComplete reports whether body holds a whole gRPC message: its prefix and the length it
// announces. It is the stop condition of reading the stream's first message.
func MessageComplete(body []byte) bool {
	return len(body) >= prefixBytes && uint64(len(body)-prefixBytes) >= uint64(binary.BigEndian.Uint32(body[1:prefixBytes]))
}

// MessageBytes is the length of body's first message, prefix included: what a reader of the stream
// has consumed once it decoded that message. body must hold a whole one (MessageComplete).
func MessageBytes(body []byte) int {
	return prefixBytes + int(binary.BigEndian.Uint32(body[1:prefixBytes]))
}

// DecodeResponse decodes the first message of body, gRPC framing included. It rejects compressed
// messages (we never offer compression), a message over MaxMessageBytes, and malformed protobuf.
func DecodeResponse(body []byte) (*X509SVIDResponse, error) {
	if len(body) < prefixBytes {
		return nil, fmt.Errorf("a message of %d bytes is shorter than gRPC's prefix", len(body))
	}
	if body[0] != 0 {
		return nil, errors.New("a compressed message, though we offered no compression")
	}
	n := binary.BigEndian.Uint32(body[1:prefixBytes])
	if n > MaxMessageBytes {
		return nil, fmt.Errorf("a message of %d bytes, over the limit of %d", n, MaxMessageBytes)
	}
	if uint64(len(body)-prefixBytes) < uint64(n) {
		return nil, fmt.Errorf("a message cut short: %d of %d bytes", len(body)-prefixBytes, n)
	}
	return decodeX509SVIDResponse(body[prefixBytes : prefixBytes+int(n)])
}

func decodeX509SVIDResponse(msg []byte) (*X509SVIDResponse, error) {
	resp := &X509SVIDResponse{}
	err := eachField(msg, func(number int, value []byte) error {
		switch number {
		case 1:
			svid, err := decodeX509SVID(value)
			if err != nil {
				return fmt.Errorf("svids[%d]: %w", len(resp.SVIDs), err)
			}
			resp.SVIDs = append(resp.SVIDs, svid)
		case 2:
			resp.CRLs = append(resp.CRLs, value)
		case 3:
			domain, bundle, err := decodeMapEntry(value)
			if err != nil {
				return fmt.Errorf("federated_bundles: %w", err)
			}
			if resp.FederatedBundles == nil {
				resp.FederatedBundles = map[string][]byte{}
			}
			resp.FederatedBundles[domain] = bundle
		}
		return nil
	})
	return resp, err
}

func decodeX509SVID(msg []byte) (X509SVID, error) {
	var svid X509SVID
	err := eachField(msg, func(number int, value []byte) error {
		switch number {
		case 1:
			if !utf8.Valid(value) {
				return errors.New("spiffe_id is not UTF-8")
			}
			svid.SPIFFEID = string(value)
		case 2:
			svid.Certificates = value
		case 3:
			svid.Key = value
		case 4:
			svid.Bundle = value
		case 5:
			if !utf8.Valid(value) {
				return errors.New("hint is not UTF-8")
			}
			svid.Hint = string(value)
		}
		return nil
	})
	return svid, err
}

// decodeMapEntry decodes a map<string, bytes> entry: key = 1, value = 2, both optional.
func decodeMapEntry(msg []byte) (key string, value []byte, err error) {
	err = eachField(msg, func(number int, v []byte) error {
		switch number {
		case 1:
			if !utf8.Valid(v) {
				return errors.New("a key that is not UTF-8")
			}
			key = string(v)
		case 2:
			value = v
		}
		return nil
	})
	return key, value, err
}

// eachField calls fn with the number and value of every length-delimited field of msg, in order, and
// skips the fields of the other wire types: an unknown field of a newer agent is no error, and a known
// number with another wire type is an unknown field, as protobuf's own decoder treats it.
func eachField(msg []byte, fn func(number int, value []byte) error) error {
	for len(msg) > 0 {
		tag, n := binary.Uvarint(msg)
		if n <= 0 {
			return errors.New("malformed protobuf: bad field tag")
		}
		msg = msg[n:]
		number, wireType := tag>>3, tag&7
		if number == 0 || number > 1<<29-1 {
			return fmt.Errorf("malformed protobuf: field number %d", number)
		}
		switch wireType {
		case 0: // varint
			_, n := binary.Uvarint(msg)
			if n <= 0 {
				return errors.New("malformed protobuf: bad varint")
			}
			msg = msg[n:]
		case 1: // 64-bit
			if len(msg) < 8 {
				return errors.New("malformed protobuf: a 64-bit field cut short")
			}
			msg = msg[8:]
		case 5: // 32-bit
			if len(msg) < 4 {
				return errors.New("malformed protobuf: a 32-bit field cut short")
			}
			msg = msg[4:]
		case 2: // length-delimited
			length, n := binary.Uvarint(msg)
			if n <= 0 || length > uint64(len(msg)-n) {
				return errors.New("malformed protobuf: a length-delimited field cut short")
			}
			value := msg[n : n+int(length)]
			msg = msg[n+int(length):]
			if err := fn(int(number), value); err != nil {
				return err
			}
		default:
			return fmt.Errorf("malformed protobuf: wire type %d", wireType)
		}
	}
	return nil
}
