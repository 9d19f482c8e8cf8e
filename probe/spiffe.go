package probe

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md) and the X.509-SVID
// rules (X509-SVID.md) that -spiffe-id verifies a server's certificate by, instead of a DNS name.

// spiffeID is a parsed SPIFFE ID: spiffe://trust-domain/path. An empty path is the trust-domain form of
// -spiffe-id, which accepts any ID in that trust domain.
type spiffeID struct {
	trustDomain string // lowercase: [a-z0-9._-]+
	path        string // "" or /segment/segment…
}

func (id spiffeID) String() string { return "spiffe://" + id.trustDomain + id.path }

// matches reports whether presented is the ID a -spiffe-id of want accepts: the same ID, or for the
// trust-domain form, any ID of that trust domain.
func (want spiffeID) matches(presented spiffeID) bool {
	return want.trustDomain == presented.trustDomain && (want.path == "" || want.path == presented.path)
}

// parseSPIFFEID parses a SPIFFE ID as the standard defines it: the scheme "spiffe", a trust domain of
// lowercase letters, digits, dots, dashes and underscores, and a path of segments of letters, digits,
// dots, dashes and underscores, none of them empty, "." or "..". No port, user information, query or
// fragment, and no percent-encoding.
func parseSPIFFEID(s string) (spiffeID, error) {
	const scheme = "spiffe://"
	if !strings.HasPrefix(s, scheme) {
		return spiffeID{}, errors.New("not a SPIFFE ID: want spiffe://trust-domain[/path]")
	}
	rest := s[len(scheme):]
	trustDomain, path := rest, ""
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		trustDomain, path = rest[:slash], rest[slash:]
	}
	if trustDomain == "" {
		return spiffeID{}, errors.New("no trust domain")
	}
	for _, r := range trustDomain {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
		case r == ':':
			return spiffeID{}, errors.New("a trust domain has no port")
		case r == '@':
			return spiffeID{}, errors.New("a SPIFFE ID has no user information")
		case r >= 'A' && r <= 'Z':
			return spiffeID{}, errors.New("a trust domain is lowercase")
		default:
			return spiffeID{}, fmt.Errorf("%q is not allowed in a trust domain (letters, digits, '.', '-', '_')", r)
		}
	}
	if path == "" {
		return spiffeID{trustDomain: trustDomain}, nil
	}
	for _, segment := range strings.Split(path[1:], "/") {
		switch segment {
		case "":
			return spiffeID{}, errors.New("an empty path segment (a double or trailing slash)")
		case ".", "..":
			return spiffeID{}, fmt.Errorf("a path segment %q", segment)
		}
		for _, r := range segment {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			case r == '?' || r == '#':
				return spiffeID{}, errors.New("a SPIFFE ID has no query or fragment")
			default:
				return spiffeID{}, fmt.Errorf("%q is not allowed in a path (letters, digits, '.', '-', '_')", r)
			}
		}
	}
	return spiffeID{trustDomain: trustDomain, path: path}, nil
}

// parseSPIFFEIDs parses the -spiffe-id values; an error is a usageError naming the bad one.
func parseSPIFFEIDs(values []string) ([]spiffeID, error) {
	ids := make([]spiffeID, 0, len(values))
	for _, v := range values {
		id, err := parseSPIFFEID(v)
		if err != nil {
			return nil, usageErrorf("bad -spiffe-id %q: %v", v, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// svidID is the SPIFFE ID of an X.509-SVID: its one URI SAN. The X.509-SVID standard allows exactly
// one, so a certificate with several is no SVID, whichever of them we would accept.
func svidID(cert *x509.Certificate) (spiffeID, error) {
	switch len(cert.URIs) {
	case 0:
		return spiffeID{}, errors.New("the server's certificate has no SPIFFE ID (no URI SAN)")
	case 1:
	default:
		return spiffeID{}, fmt.Errorf("the server's certificate has %d URI SANs, and an X.509-SVID has exactly one", len(cert.URIs))
	}
	raw := cert.URIs[0].String()
	id, err := parseSPIFFEID(raw)
	if err != nil {
		return spiffeID{}, fmt.Errorf("the server's certificate's URI SAN %q is not a SPIFFE ID: %v", raw, err)
	}
	return id, nil
}

// trustBundles are the CA certificates that verify a server's X.509-SVID: one pool for every trust
// domain (-cacert), or one per trust domain (the Workload API's own bundle and federated ones).
type trustBundles struct {
	all      *x509.CertPool
	byDomain map[string]*x509.CertPool
}

func (b trustBundles) pool(trustDomain string) *x509.CertPool {
	if b.all != nil {
		return b.all
	}
	return b.byDomain[trustDomain]
}

// verifySVID verifies a server's certificate chain as an X.509-SVID: it chains to the bundle of its
// trust domain — with no DNS name to match —, it is a leaf fit for signing a handshake, and its one
// SPIFFE ID is one that want accepts.
func verifySVID(chain []*x509.Certificate, want []spiffeID, bundles trustBundles) error {
	if len(chain) == 0 {
		return errors.New("the server presented no certificate")
	}
	leaf := chain[0]
	presented, err := svidID(leaf)
	if err != nil {
		return err
	}
	roots := bundles.pool(presented.trustDomain)
	if roots == nil {
		return fmt.Errorf("the server's SPIFFE ID %s is in a trust domain we have no bundle for", presented)
	}
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	// Any extended key usage, as go-spiffe's x509svid.Verify: SVIDs are both client and server
	// certificates, and the standard does not require serverAuth.
	opts := x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("the server's certificate (SPIFFE ID %s): %w", presented, err)
	}
	switch {
	case leaf.IsCA:
		return fmt.Errorf("the server's certificate (SPIFFE ID %s) is a CA certificate, not an X.509-SVID leaf", presented)
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return fmt.Errorf("the server's certificate (SPIFFE ID %s) may sign certificates or CRLs, which an X.509-SVID leaf may not", presented)
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return fmt.Errorf("the server's certificate (SPIFFE ID %s) lacks the digitalSignature key usage", presented)
	}
	for _, id := range want {
		if id.matches(presented) {
			return nil
		}
	}
	return fmt.Errorf("the server's SPIFFE ID is %s, want %s", presented, describeIDs(want))
}

// describeIDs lists the accepted IDs for a failure line: "spiffe://a/x or any ID in spiffe://b".
func describeIDs(ids []spiffeID) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		if id.path == "" {
			parts[i] = "any ID in " + id.String()
		} else {
			parts[i] = id.String()
		}
	}
	return strings.Join(parts, " or ")
}
