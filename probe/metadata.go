package probe

import (
	"encoding/base64"
	"sort"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// gRPC request metadata from -header, as the gRPC over HTTP/2 protocol
// (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) allows it: lowercase names of
// letters, digits, '-', '_' and '.'; printable ASCII values; and binary values, under names ending
// in "-bin", base64 on the wire. -header takes a -bin value as base64 too (a command line and a YAML
// manifest carry text), padded or not, and sends it unpadded, as the protocol asks senders to.

// binSuffix ends the name of a binary metadata entry.
const binSuffix = "-bin"

// validateMetadata checks -header entries for a gRPC call. The header of the call itself is the
// probe's to write: pseudo-headers (which ParseHeader never lets through), content-type, te, the
// grpc-* names gRPC reserves for itself, the connection's headers (an HTTP check drops them; HTTP/2
// forbids them), and the body's framing (ParseHeader refuses those for every target). A User-Agent
// replaces ours, as on HTTP, and an empty one removes it; a Host sets :authority.
func validateMetadata(header map[string][]string) error {
	for name, values := range header {
		key := strings.ToLower(name)
		switch {
		case strings.ContainsFunc(key, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}):
			return usageErrorf("bad -header %q for gRPC: metadata names are letters, digits, '-', '_' and '.'", name)
		case key == "content-type" || key == "te" || strings.HasPrefix(key, "grpc-"):
			return usageErrorf("bad -header %q for gRPC: %s is the probe's to write (gRPC reserves it)", name, key)
		case hopByHopHeaders[name]:
			return usageErrorf("bad -header %q for gRPC: %s is about the connection, which HTTP/2 forbids in a request", name, key)
		}
		for _, value := range values {
			if strings.HasSuffix(key, binSuffix) {
				if _, err := decodeBinaryMetadata(value); err != nil {
					return usageErrorf("bad -header %q for gRPC: a -bin value is base64: %v", name, err)
				}
				continue
			}
			if strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
				return usageErrorf("bad -header %q for gRPC: metadata values are printable ASCII (other bytes need a -bin name and base64)", name)
			}
		}
	}
	return nil
}

// decodeBinaryMetadata decodes a -bin value, base64 with or without padding.
func decodeBinaryMetadata(value string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(value, "="))
}

// appendMetadata appends -header entries, which validateMetadata accepted, as gRPC metadata: lowercase
// names, in a stable order, binary values base64 without padding.
func appendMetadata(fields []hpack.HeaderField, header map[string][]string) []hpack.HeaderField {
	names := make([]string, 0, len(header))
	for name := range header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := strings.ToLower(name)
		if key == "host" || framingHeaders[name] || hopByHopHeaders[name] { // Host is :authority; validateMetadata refuses the others
			continue
		}
		for _, value := range header[name] {
			if value == "" && name == "User-Agent" {
				continue // -header 'User-Agent:' removes ours, the one default a call has
			}
			if strings.HasSuffix(key, binSuffix) {
				raw, _ := decodeBinaryMetadata(value)
				value = base64.RawStdEncoding.EncodeToString(raw)
			}
			fields = append(fields, hpack.HeaderField{Name: key, Value: value})
		}
	}
	return fields
}
