package probe

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunked is an HTTP/1.1 answer with body in chunks of the given sizes, the last size repeated to
// the end; ext follows every chunk size, trailer (whole lines) follows the last chunk.
func chunked(body string, sizes []int, ext, trailer string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	for i := 0; len(body) > 0; i++ {
		n := min(sizes[min(i, len(sizes)-1)], len(body))
		fmt.Fprintf(&b, "%x%s\r\n%s\r\n", n, ext, body[:n])
		body = body[n:]
	}
	b.WriteString("0" + ext + "\r\n" + trailer + "\r\n")
	return b.String()
}

// bodyFramings are the ways a server may send the same body: the -expect-body window is the first
// maxBodyBytes of the decoded body in each.
var bodyFramings = []struct {
	name  string
	frame func(body string) string
}{
	{"Content-Length", func(body string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}},
	{"one chunk", func(body string) string { return chunked(body, []int{len(body)}, "", "") }},
	{"1,000-byte chunks", func(body string) string { return chunked(body, []int{1000}, "", "") }},
	{"7-byte chunks", func(body string) string { return chunked(body, []int{7}, "", "") }},
	{"1-byte chunks", func(body string) string { return chunked(body, []int{1}, "", "") }},
	{"7-byte chunks with extensions", func(body string) string {
		return chunked(body, []int{7}, `;name="a quoted value"`, "")
	}},
	{"1-byte chunks and trailers", func(body string) string {
		return chunked(body, []int{1}, "", "X-Checksum: 0123456789abcdef\r\nX-Other: "+strings.Repeat("t", 500)+"\r\n")
	}},
	{"a chunk ending inside the text at the edge", func(body string) string {
		return chunked(body, []int{maxBodyBytes - 3, 100}, ";edge", "X-Edge: 1\r\n")
	}},
	{"a 3,000-byte extension on each chunk around the edge", func(body string) string {
		return chunked(body, []int{maxBodyBytes - 3, 100}, ";"+strings.Repeat("e", 3000), "")
	}},
	{"a chunk ending just past the edge", func(body string) string {
		return chunked(body, []int{maxBodyBytes + 1, 100}, "", "")
	}},
}

// TestHTTPExpectBodyWindowIsTheDecodedBody: the text -expect-body looks for is found when it ends at
// the window's last byte (10,240), and not when it ends one byte later, whatever the framing: the
// chunks' framing (5 bytes to each byte of data, in 1-byte chunks) is no part of the window.
func TestHTTPExpectBodyWindowIsTheDecodedBody(t *testing.T) {
	const text = "STATUS=READY"
	atTheEdge := strings.Repeat("b", maxBodyBytes-len(text)) + text
	pastTheEdge := "b" + atTheEdge
	for _, framing := range bodyFramings {
		t.Run(framing.name, func(t *testing.T) {
			c := testConfig(t, rawServer(t, framing.frame(atTheEdge)))
			c.ExpectBody = text
			report := run(c)
			assert.Equal(t, Healthy, report.Result, report.Line())

			c = testConfig(t, rawServer(t, framing.frame(pastTheEdge)))
			c.ExpectBody = text
			report = run(c)
			assert.Equal(t, Unhealthy, report.Result, report.Line())
			assert.Contains(t, report.Line(), `body does not contain "STATUS=READY": "bbbb`)
		})
	}
}

// keepAliveAnswers answers every request on every connection with answer, and counts connections.
func keepAliveAnswers(t *testing.T, answer string) (url string, conns func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan struct{}, 100)
	serveConns(t, ln, func(conn net.Conn) {
		accepted <- struct{}{}
		text := textproto.NewReader(bufio.NewReader(conn))
		for {
			if _, err := text.ReadLine(); err != nil { // the request line
				return
			}
			if _, err := text.ReadMIMEHeader(); err != nil {
				return
			}
			if _, err := conn.Write([]byte(answer)); err != nil {
				return
			}
		}
	})
	return "http://" + ln.Addr().String() + "/healthz", func() int { return len(accepted) }
}

// TestSessionKeepsTheConnectionAfterAFullWindow: a body that fills the window is read to its end,
// trailers included, whatever its framing, and the connection carries the next check.
func TestSessionKeepsTheConnectionAfterAFullWindow(t *testing.T) {
	body := strings.Repeat("b", maxBodyBytes-5) + "READY"
	for _, framing := range bodyFramings {
		t.Run(framing.name, func(t *testing.T) {
			url, conns := keepAliveAnswers(t, framing.frame(body))
			c := testConfig(t, url)
			c.ExpectBody = "READY"
			session := NewSession(*c)
			defer session.Close()
			for i := range 3 {
				report := session.Check(context.Background())
				require.Equal(t, Healthy, report.Result, "check %d: %s", i, report.Line())
			}
			assert.Equal(t, 1, conns())
		})
	}
}

// TestHTTPChunkedFramingIsBounded: a body whose chunks carry more framing than data, past what
// net/http allows, is a malformed answer, not one read without end.
func TestHTTPChunkedFramingIsBounded(t *testing.T) {
	answer := chunked(strings.Repeat("b", 2000)+"READY", []int{1}, ";"+strings.Repeat("x", 40), "")
	c := testConfig(t, rawServer(t, answer))
	c.ExpectBody = "READY"
	report := run(c)
	assert.Equal(t, Unreachable, report.Result, report.Line())
	assert.Contains(t, report.Line(), "chunked body: too much framing for its data")
}
