// Package workloadapi is the wire format of the one SPIFFE Workload API call the probe makes,
// SpiffeWorkloadAPI/FetchX509SVID: its empty request and the first X509SVIDResponse of its stream,
// decoded by hand on grpcwire's framing and protobuf rules, as grpchealth does for the health call,
// instead of linking grpc-go, protobuf and go-spiffe into a binary that runs in every pod every few seconds. The tests check it
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
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/grpcwire"
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

// Request is the framed, empty X509SVIDRequest.
var Request = grpcwire.AppendMessage(nil, nil)

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

// DecodeResponse decodes the first message of body, gRPC framing included: what follows it is the
// stream's next message. It rejects compressed messages (we never offer compression), a message over
// MaxMessageBytes, and malformed protobuf.
func DecodeResponse(body []byte) (*X509SVIDResponse, error) {
	message, _, err := grpcwire.FirstMessage(body, MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	return decodeX509SVIDResponse(message)
}

// The schemas of the messages: every field the probe reads is length-delimited.
var (
	responseSchema = grpcwire.Schema{1: grpcwire.Bytes, 2: grpcwire.Bytes, 3: grpcwire.Bytes}
	svidSchema     = grpcwire.Schema{1: grpcwire.Bytes, 2: grpcwire.Bytes, 3: grpcwire.Bytes, 4: grpcwire.Bytes, 5: grpcwire.Bytes}
	mapEntrySchema = grpcwire.Schema{1: grpcwire.Bytes, 2: grpcwire.Bytes}
)

func decodeX509SVIDResponse(msg []byte) (*X509SVIDResponse, error) {
	resp := &X509SVIDResponse{}
	err := grpcwire.EachField(msg, responseSchema, func(f grpcwire.Field) error {
		switch value := f.Bytes; f.Number {
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
	err := grpcwire.EachField(msg, svidSchema, func(f grpcwire.Field) error {
		switch value := f.Bytes; f.Number {
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
	err = grpcwire.EachField(msg, mapEntrySchema, func(f grpcwire.Field) error {
		switch v := f.Bytes; f.Number {
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
