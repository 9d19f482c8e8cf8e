package probe

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/probe/internal/h2"
)

// assertUsageError checks that err is a usage error whose message contains want.
func assertUsageError(t *testing.T, err error, want string) {
	t.Helper()
	if !assert.Error(t, err) {
		return
	}
	assert.True(t, isUsage(err), "%v is a usage error", err)
	assert.Contains(t, err.Error(), want)
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		raw     string
		want    string // the parsed URL, when valid
		wantErr string
	}{
		{raw: "http://localhost:8080/healthz", want: "http://localhost:8080/healthz"},
		{raw: "HTTPS://localhost/healthz?full=1", want: "https://localhost/healthz?full=1"},
		{raw: "https://[::1]:8443/", want: "https://[::1]:8443/"},
		{raw: "grpc://localhost:9090", want: "grpc://localhost:9090"},
		{raw: "grpcs://api.internal:443/", want: "grpcs://api.internal:443/"},
		{raw: "tcp://db:5432", want: "tcp://db:5432"},
		{raw: "tls://db:5432", want: "tls://db:5432"},
		{raw: "", wantErr: "empty URL"},
		{raw: "localhost:8080", wantErr: "unknown scheme \"localhost\""},
		{raw: "/healthz", wantErr: "no scheme"},
		{raw: "ftp://host/", wantErr: "unknown scheme \"ftp\""},
		{raw: "http://", wantErr: "no host"},
		{raw: "http:///healthz", wantErr: "no host"},
		{raw: "http://:8080/", wantErr: "no host"},
		{raw: "http://[::%25\xc0]", wantErr: "the host cannot be written back as a URL"},
		{raw: "http://host:0/", wantErr: "port \"0\""},
		{raw: "http://host:70000/", wantErr: "port \"70000\""},
		{raw: "http://host:/", wantErr: "empty port"},
		{raw: "http://user:pass@host/", wantErr: "user information"},
		{raw: "http://host name/", wantErr: "bad URL"},
		{raw: "tcp://db", wantErr: "tcp:// needs a port"},
		{raw: "tls://db:5432/path", wantErr: "takes only host and port"},
		{raw: "grpc://host:9090/my.Service", wantErr: "the service is -service"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := ParseTarget(tt.raw)
			if tt.wantErr != "" {
				assertUsageError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, u.String())
		})
	}
}

// TestLegacyTarget: the original tool's -scheme, -host, -statusPort and -path build the URL.
func TestLegacyTarget(t *testing.T) {
	tests := []struct {
		name                     string
		scheme, host, port, path string
		want                     string
		wantErr                  string
	}{
		{name: "defaults with a port", scheme: "http", host: "localhost", port: "8080", want: "http://localhost:8080"},
		{name: "path with a slash", scheme: "http", host: "localhost", port: "8080", path: "/healthz", want: "http://localhost:8080/healthz"},
		{name: "path without a slash", scheme: "http", host: "localhost", port: "8080", path: "healthz", want: "http://localhost:8080/healthz"},
		{name: "https", scheme: "https", host: "app", port: "8443", path: "status/ready", want: "https://app:8443/status/ready"},
		{name: "IPv6 host", scheme: "http", host: "::1", port: "80", want: "http://[::1]:80"},
		{name: "bracketed IPv6 host", scheme: "http", host: "[::1]", port: "80", want: "http://[::1]:80"},
		{name: "grpc scheme", scheme: "grpc", host: "localhost", port: "9090", want: "grpc://localhost:9090"},
		{name: "upper-case scheme", scheme: "HTTPS", host: "localhost", port: "1", want: "https://localhost:1"},
		{name: "no port", scheme: "http", host: "localhost", wantErr: "give a URL, or -statusPort"},
		{name: "bad port", scheme: "http", host: "localhost", port: "http", wantErr: "bad -statusPort"},
		{name: "bad scheme", scheme: "ftp", host: "localhost", port: "21", wantErr: "bad -scheme \"ftp\""},
		{name: "empty host", scheme: "http", port: "80", wantErr: "empty -host"},
		{name: "host with a path", scheme: "http", host: "a/b", port: "80", wantErr: "bad -host"},
		{name: "path on tcp", scheme: "tcp", host: "localhost", port: "80", path: "/x", wantErr: "-path applies to http and https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := LegacyTarget(tt.scheme, tt.host, tt.port, tt.path)
			if tt.wantErr != "" {
				assertUsageError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, u.String())
		})
	}
}

func TestStatusSet(t *testing.T) {
	tests := []struct {
		text     string
		in, out  []int
		wantErr  string
		asString string
	}{
		{text: "200-399", in: []int{200, 204, 301, 399}, out: []int{199, 400, 503}, asString: "200-399"},
		{text: "200", in: []int{200}, out: []int{201, 204}, asString: "200"},
		{text: "200,204,300-399", in: []int{200, 204, 302}, out: []int{201, 400}, asString: "200,204,300-399"},
		{text: " 200 , 418 ", in: []int{200, 418}, out: []int{201}, asString: "200,418"},
		{text: "100-599", in: []int{100, 599}, asString: "100-599"},
		{text: "", wantErr: "empty -expect-status"},
		{text: "2xx", wantErr: `"2xx" is not a status code`},
		{text: "99", wantErr: `"99" is not`},
		{text: "600", wantErr: `"600" is not`},
		{text: "0200", wantErr: `"0200" is not`},
		{text: "+200", wantErr: `"+200" is not`},
		{text: "200,", wantErr: `"" is not`},
		{text: "399-200", wantErr: "backwards"},
		{text: "200-", wantErr: `"" is not`},
		{text: "200-300-400", wantErr: `"300-400" is not`},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			set, err := ParseStatusSet(tt.text)
			if tt.wantErr != "" {
				assertUsageError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			for _, code := range tt.in {
				assert.True(t, set.Contains(code), "%d in %s", code, tt.text)
			}
			for _, code := range tt.out {
				assert.False(t, set.Contains(code), "%d not in %s", code, tt.text)
			}
			assert.Equal(t, tt.asString, set.String())
		})
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		line, name, value, wantErr string
	}{
		{line: "Authorization: Bearer x", name: "Authorization", value: "Bearer x"},
		{line: "x-probe:yes", name: "X-Probe", value: "yes"},
		{line: "Host: app.internal", name: "Host", value: "app.internal"},
		{line: "X-Empty:", name: "X-Empty", value: ""},
		{line: "X-Time: 12:30", name: "X-Time", value: "12:30"},
		{line: "no colon", wantErr: "want 'Name: value'"},
		{line: ": value", wantErr: "want 'Name: value'"},
		{line: "Bad Name: v", wantErr: "want 'Name: value'"},
		{line: "X: a\r\nInjected: b", wantErr: "control characters"},
		{line: "Content-Length: 5", wantErr: "Content-Length would frame a body that the probe's GET or HEAD does not have"},
		{line: "transfer-encoding: chunked", wantErr: "Transfer-Encoding would frame a body"},
		{line: "Trailer: X-Sum", wantErr: "Trailer would frame a body"},
		// The connection's own headers, which an httpGet probe's httpHeaders may hold: an HTTP check
		// drops them, a gRPC check refuses them (Validate).
		{line: "Connection: Keep-Alive", name: "Connection", value: "Keep-Alive"},
		{line: "keep-alive: timeout=5", name: "Keep-Alive", value: "timeout=5"},
		{line: "TE: trailers", name: "Te", value: "trailers"},
		{line: "Upgrade: h2c", name: "Upgrade", value: "h2c"},
		{line: "Proxy-Connection: keep-alive", name: "Proxy-Connection", value: "keep-alive"},
		{line: "User-Agent:", name: "User-Agent", value: ""},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			name, value, err := ParseHeader(tt.line)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.name, name)
			assert.Equal(t, tt.value, value)
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		target    string
		configure func(c *Config)
		wantErr   string
	}{
		{name: "defaults are valid", target: "https://localhost/healthz"},
		{name: "zero timeout", target: "http://localhost/", configure: func(c *Config) { c.Timeout = 0 }, wantErr: "-timeout must be positive"},
		{name: "a day is the longest timeout", target: "http://localhost/", configure: func(c *Config) { c.Timeout = MaxTimeout }},
		{name: "timeout over a day", target: "http://localhost/", configure: func(c *Config) { c.Timeout = MaxTimeout + time.Nanosecond },
			wantErr: "-timeout 24h0m0.000000001s is longer than the maximum, 24h0m0s"},
		{name: "negative retries", target: "http://localhost/", configure: func(c *Config) { c.Retries = -1 }, wantErr: "-retry must be 0 or more"},
		{name: "negative delay", target: "http://localhost/", configure: func(c *Config) { c.RetryDelay = -time.Second }, wantErr: "-retry-delay"},
		{name: "POST", target: "http://localhost/", configure: func(c *Config) { c.Method = "POST" }, wantErr: `bad -method "POST"`},
		{name: "method on grpc", target: "grpc://localhost:1", configure: func(c *Config) { c.Method = "HEAD" }, wantErr: "-method applies to http"},
		{name: "body on tcp", target: "tcp://localhost:1", configure: func(c *Config) { c.ExpectBody = "x" }, wantErr: "-expect-body applies to http"},
		{name: "status on grpc", target: "grpc://localhost:1", configure: func(c *Config) { c.ExpectStatus, _ = ParseStatusSet("200") }, wantErr: "-expect-status applies to http"},
		{name: "host on tls", target: "tls://localhost:1", configure: func(c *Config) { c.Host = "x" }, wantErr: "-header applies to http"},
		{name: "service on http", target: "http://localhost/", configure: func(c *Config) { c.GRPCService = "x" }, wantErr: "-service applies to grpc"},
		{name: "post-quantum on plain grpc", target: "grpc://localhost:1", configure: func(c *Config) { c.TLS.PostQuantum = true }, wantErr: "-post-quantum needs a TLS scheme"},
		{name: "server name on tcp", target: "tcp://localhost:1", configure: func(c *Config) { c.TLS.ServerName = "x" }, wantErr: "-server-name needs a TLS scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t, tt.target)
			if tt.configure != nil {
				tt.configure(c)
			}
			err := c.Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assertUsageError(t, err, tt.wantErr)
		})
	}
}

func TestReportLine(t *testing.T) {
	report := Report{Result: Unhealthy, Checked: "GET https://localhost:8443/healthz", Detail: "503 Service Unavailable", Attempts: 2}
	assert.Equal(t, "unhealthy: GET https://localhost:8443/healthz: 503 Service Unavailable after 2 attempts", report.Line())

	report = Report{Result: Unreachable, Checked: "tcp://db:5432", Detail: strings.Repeat("x", 5000), Attempts: 1}
	assert.LessOrEqual(t, len(report.Line()), maxLineBytes)
	assert.True(t, strings.HasSuffix(report.Line(), "…"))

	report = Report{Result: Unhealthy, Detail: "a\nb\x1b[0m\u2028c\xff"}
	assert.Equal(t, "unhealthy: a?b?[0m?c?", report.Line())

	exact := Report{Result: Unhealthy, Detail: strings.Repeat("x", maxLineBytes-len("unhealthy: "))}
	assert.Equal(t, "unhealthy: "+exact.Detail, exact.Line(), "a line of exactly the limit is not cut")
}

// TestReportLineCutsWhatWasCheckedFirst: a long path or -service shortens what was checked, never the
// reason, and never the attempts.
func TestReportLineCutsWhatWasCheckedFirst(t *testing.T) {
	reason := "dial tcp 127.0.0.1:1: connect: connection refused"
	report := Report{Result: Unreachable, Checked: "GET http://127.0.0.1:1/" + strings.Repeat("p", 600), Detail: reason, Attempts: 2}
	line := report.Line()
	assert.Len(t, line, maxLineBytes)
	assert.True(t, strings.HasPrefix(line, "unreachable: GET http://127.0.0.1:1/ppp"), line)
	assert.True(t, strings.HasSuffix(line, "p…: "+reason+" after 2 attempts"), line)

	report.Detail = strings.Repeat("r", 600)
	line = report.Line()
	assert.Len(t, line, maxLineBytes)
	assert.Equal(t, "unreachable: "+strings.Repeat("r", maxLineBytes-len("unreachable: …")-len(" after 2 attempts"))+"… after 2 attempts", line,
		"a reason too long alone leaves no room for what was checked")

	report.Insecure = true
	line = report.Line()
	assert.Len(t, line, maxLineBytes)
	assert.True(t, strings.HasSuffix(line, "r… after 2 attempts (-insecure: the server's certificate was not verified)"), line)
}

// TestLongTargetsKeepTheReason: the same through a real run, for a long HTTP path and a long -service.
func TestLongTargetsKeepTheReason(t *testing.T) {
	for _, c := range []*Config{
		testConfig(t, "http://"+closedPort(t)+"/"+strings.Repeat("long-path/", 60)),
		func() *Config {
			c := testConfig(t, "grpc://"+closedPort(t))
			c.GRPCService = strings.Repeat("my.long.Service", 40)
			return c
		}(),
	} {
		line := run(c).Line()
		assert.LessOrEqual(t, len(line), maxLineBytes)
		assert.True(t, strings.HasSuffix(line, "connect: connection refused"), line)
	}
}

func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"http://u:hunter2@host/h?token=SECRET":      "http://…@host/h?…",
		"https://user@host:8443/healthz#frag":       "https://…@host:8443/healthz",
		"http://host/healthz":                       "http://host/healthz",
		"http:user:hunter2@host":                    "http:…@host",
		"http://u:hunter2@[::1/?token=SECRET":       "http://…@[::1/?…",
		"http://u:hunter2@ho st/x#token=SECRET":     "http://…@ho st/x",
		"grpc://a@b@host:1/?x":                      "grpc://…@host:1/?…",
		"not a url at all, with ?token=SECRET init": "not a url at all, with ?…",
	} {
		got := RedactURL(raw)
		assert.Equal(t, want, got, raw)
		assert.NotContains(t, got, "hunter2")
		assert.NotContains(t, got, "SECRET")
	}
}

// TestUsageLine: usage errors follow the rules of every line — one line, at most 512 bytes, control
// characters replaced — and keep their hint.
func TestUsageLine(t *testing.T) {
	hint := "(see health-check -h)"
	assert.Equal(t, "usage: bad -x (see health-check -h)", UsageLine(errors.New("bad -x"), hint))
	line := UsageLine(errors.New("flag provided but not defined: -a\nb\x1b[31m"+strings.Repeat("y", 5000)), hint)
	assert.Len(t, line, maxLineBytes)
	assert.True(t, strings.HasPrefix(line, "usage: flag provided but not defined: -a?b?[31myyy"), line)
	assert.True(t, strings.HasSuffix(line, "y… "+hint), line)

	_, err := ParseTarget("http://u:hunter2@host/h?token=SECRET")
	line = UsageLine(err, hint)
	assert.Equal(t, `usage: bad URL "http://…@host/h?…": user information is not supported (use -header 'Authorization: ...') `+hint, line)
	_, err = LegacyTarget("http", "u:hunter2@host", "80", "")
	assert.NotContains(t, UsageLine(err, hint), "hunter2")
}

func TestResultExitCodes(t *testing.T) {
	assert.Equal(t, 0, Healthy.ExitCode())
	assert.Equal(t, 1, Unhealthy.ExitCode())
	assert.Equal(t, 3, Unreachable.ExitCode())
	assert.Equal(t, 64, Usage.ExitCode())
}

// TestQueryIsRedacted: a token in the query string never reaches the output line.
func TestQueryIsRedacted(t *testing.T) {
	c := testConfig(t, "http://"+closedPort(t)+"/healthz?token=secret")
	line := run(c).Line()
	assert.Contains(t, line, "/healthz?…")
	assert.NotContains(t, line, "secret")
}

func TestValidateRejectsAServiceNameOverOneHTTP2Window(t *testing.T) {
	c := testConfig(t, "grpc://localhost:9090")
	c.GRPCService = strings.Repeat("s", h2.InitialSendWindow)
	assertUsageError(t, c.Validate(), "-service of 65535 bytes is too long")
	c.Retries = 3
	report := run(c)
	assert.Equal(t, Usage, report.Result)
	assert.Zero(t, report.Attempts, "a usage error is never retried")
}
