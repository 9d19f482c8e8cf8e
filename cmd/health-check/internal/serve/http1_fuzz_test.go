package serve

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requestSeeds are request heads as clients send them, and as they should not.
var requestSeeds = []string{
	"GET /live HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: kube-probe/1.31\r\nAccept: */*\r\nConnection: close\r\n\r\n",
	"HEAD /ready?verbose=1 HTTP/1.1\r\nHost: 10.0.0.7\r\nContent-Length: 0\r\n\r\n",
	"GET /live HTTP/1.0\r\n\r\nGET /ready HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /live HTTP/1.1\nHost: a\nX-Obs-Text: caf\xc3\xa9\n\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2fb%20c HTTP/1.1\r\nHost: a\r\nX-Tab:\tv\t\r\n\r\n",
	"GET http://a/live HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /live HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET /live HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
	"GET /live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET /live HTTP/2.0\r\nHost: a\r\n\r\n",
	"GET /live HTTP/1.1\r\nHost : a\r\n\r\n",
	"GET /live HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
	"GET /live HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
	"GET /li\rve HTTP/1.1\r\nHost: a\r\n\r\n",
}

// FuzzReadRequest holds serve's request reader to net/http's (http.ReadRequest): a head serve accepts,
// net/http accepts too, with the same method, path and connection handling, and it ends where
// net/http says it ends, so a pipelined next request is read from the same byte by both. Serve may
// refuse more than net/http (a body, chunked framing, any target but a path, a missing Host); it
// accepts nothing net/http refuses.
func FuzzReadRequest(f *testing.F) {
	for _, seed := range requestSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		const limit = 1 << 10
		source := bytes.NewReader(head)
		r := bufio.NewReaderSize(source, 64) // small, so that lines span several reads
		req, err := readRequest(r, limit)
		if err != nil {
			return
		}
		serveRest := r.Buffered() + source.Len()

		netSource := bytes.NewReader(head)
		netReader := bufio.NewReader(netSource)
		netReq, err := http.ReadRequest(netReader)
		require.NoError(t, err, "serve accepted %q", head)
		assert.Equal(t, netReq.Method, req.method)
		path, _, _ := strings.Cut(netReq.RequestURI, "?")
		assert.Equal(t, path, req.path)
		if req.keepAlive {
			assert.False(t, netReq.Close, "serve keeps a connection that net/http closes")
		}
		assert.Equal(t, http.NoBody, netReq.Body, "serve accepted a request with a body")
		assert.Equal(t, netReader.Buffered()+netSource.Len(), serveRest, "the head ends at another byte")
	})
}
