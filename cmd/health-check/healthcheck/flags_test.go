package healthcheck

import (
	"bytes"
	"flag"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, o *options)
		wantErr string
	}{
		{name: "URL argument", args: []string{"https://localhost:8443/healthz"}, check: func(t *testing.T, o *options) {
			assert.Equal(t, "https://localhost:8443/healthz", o.config.Target.String())
			assert.Equal(t, probe.DefaultTimeout, o.config.Timeout)
			assert.Equal(t, 1, o.config.Retries, "the original tool's -retry default")
			assert.Equal(t, "200-399", o.config.ExpectStatus.String())
		}},
		{name: "-url flag", args: []string{"-url", "tcp://db:5432"}, check: func(t *testing.T, o *options) {
			assert.Equal(t, "tcp://db:5432", o.config.Target.String())
		}},
		{name: "original tool's flags", args: []string{"-statusPort", "8080", "-path", "healthz", "-retry", "3"}, check: func(t *testing.T, o *options) {
			assert.Equal(t, "http://localhost:8080/healthz", o.config.Target.String())
			assert.Equal(t, 3, o.config.Retries)
		}},
		{name: "original tool's flags with host and scheme", args: []string{"-scheme", "https", "-host", "app", "-statusPort", "8443", "-path", "/ready"},
			check: func(t *testing.T, o *options) { assert.Equal(t, "https://app:8443/ready", o.config.Target.String()) }},
		{name: "environment fills unset flags", args: nil,
			env: map[string]string{"HEALTH_CHECK_STATUS_PORT": "9000", "HEALTH_CHECK_PATH": "/livez", "HEALTH_CHECK_TIMEOUT": "3s", "HEALTH_CHECK_EXPECT_STATUS": "200"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "http://localhost:9000/livez", o.config.Target.String())
				assert.Equal(t, 3*time.Second, o.config.Timeout)
				assert.Equal(t, "200", o.config.ExpectStatus.String())
			}},
		{name: "a flag wins over the environment", args: []string{"-timeout", "1s", "http://localhost/"},
			env:   map[string]string{"HEALTH_CHECK_TIMEOUT": "9s"},
			check: func(t *testing.T, o *options) { assert.Equal(t, time.Second, o.config.Timeout) }},
		{name: "URL from the environment", env: map[string]string{"HEALTH_CHECK_URL": "grpc://localhost:9090", "HEALTH_CHECK_SERVICE": "api"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "grpc://localhost:9090", o.config.Target.String())
				assert.Equal(t, "api", o.config.GRPCService)
			}},
		{name: "the command line's URL replaces HEALTH_CHECK_URL", args: []string{"http://127.0.0.1:8080/healthz"},
			env: map[string]string{"HEALTH_CHECK_URL": "http://127.0.0.1:1/"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "http://127.0.0.1:8080/healthz", o.config.Target.String())
			}},
		{name: "-url replaces HEALTH_CHECK_URL", args: []string{"-url", "tcp://db:5432"},
			env:   map[string]string{"HEALTH_CHECK_URL": "http://127.0.0.1:1/"},
			check: func(t *testing.T, o *options) { assert.Equal(t, "tcp://db:5432", o.config.Target.String()) }},
		{name: "the command line's original flags replace HEALTH_CHECK_URL", args: []string{"-statusPort", "8080", "-path", "healthz"},
			env: map[string]string{"HEALTH_CHECK_URL": "http://127.0.0.1:1/"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "http://localhost:8080/healthz", o.config.Target.String())
			}},
		{name: "the command line's URL replaces every original-flag variable", args: []string{"https://app:8443/ready"},
			env:   map[string]string{"HEALTH_CHECK_SCHEME": "http", "HEALTH_CHECK_HOST": "db", "HEALTH_CHECK_STATUS_PORT": "1", "HEALTH_CHECK_PATH": "/x"},
			check: func(t *testing.T, o *options) { assert.Equal(t, "https://app:8443/ready", o.config.Target.String()) }},
		{name: "the original flags on the command line win over their variables, which fill in the rest", args: []string{"-statusPort", "8080", "-path", "/livez"},
			env: map[string]string{"HEALTH_CHECK_STATUS_PORT": "9000", "HEALTH_CHECK_PATH": "/readyz", "HEALTH_CHECK_SCHEME": "https", "HEALTH_CHECK_HOST": "db"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "https://db:8080/livez", o.config.Target.String())
			}},
		{name: "-path on the command line takes the shared block's port, not its URL", args: []string{"-path=live"},
			env: map[string]string{"HEALTH_CHECK_STATUS_PORT": "9000", "HEALTH_CHECK_URL": "http://127.0.0.1:1/"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "http://localhost:9000/live", o.config.Target.String())
			}},
		{name: "-path on the command line without a port anywhere", args: []string{"-path", "/livez"},
			wantErr: "no target: give a URL, or -statusPort"},
		{name: "-path on the command line, HEALTH_CHECK_URL and no port", args: []string{"-host", "app", "-path", "/livez"},
			env:     map[string]string{"HEALTH_CHECK_URL": "http://app:8080/"},
			wantErr: "no port: -host on the command line builds the target and ignores HEALTH_CHECK_URL; give -statusPort or HEALTH_CHECK_STATUS_PORT"},
		{name: "TLS files from the environment", args: []string{"https://localhost/"},
			env: map[string]string{"HEALTH_CHECK_CACERT": "/ca", "HEALTH_CHECK_CERT": "/c", "HEALTH_CHECK_KEY": "/k", "HEALTH_CHECK_SERVER_NAME": "api", "HEALTH_CHECK_INSECURE": "true"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, probe.TLSOptions{CACert: "/ca", Cert: "/c", Key: "/k", ServerName: "api", Insecure: true}, o.config.TLS)
			}},
		{name: "headers, one a line in the environment", args: []string{"-header", "X-A: 1", "http://localhost/"},
			env: map[string]string{"HEALTH_CHECK_HEADER": "X-B: 2\nX-C: 3"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "1", http.Header(o.config.Header).Get("X-A"))
				assert.Empty(t, http.Header(o.config.Header).Get("X-B"), "the command line's -header wins over the variable")
			}},
		{name: "headers from the environment", args: []string{"http://localhost/"},
			env: map[string]string{"HEALTH_CHECK_HEADER": "X-B: 2\nHost: app.internal\n"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "2", http.Header(o.config.Header).Get("X-B"))
				assert.Equal(t, "app.internal", o.config.Host)
			}},
		{name: "SPIFFE IDs, one a line in the environment", args: []string{"-cacert", "/ca", "https://localhost/"},
			env: map[string]string{"HEALTH_CHECK_SPIFFE_ID": "spiffe://example.org/a\nspiffe://example.com\n", "HEALTH_CHECK_MIN_VALIDITY": "72h"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, []string{"spiffe://example.org/a", "spiffe://example.com"}, o.config.TLS.SPIFFEIDs)
				assert.Equal(t, 72*time.Hour, o.config.TLS.MinValidity)
			}},
		{name: "repeated -spiffe-id", args: []string{"-cacert", "/ca", "-spiffe-id", "spiffe://a.org/x", "-spiffe-id", "spiffe://b.org", "tls://db:5432"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, []string{"spiffe://a.org/x", "spiffe://b.org"}, o.config.TLS.SPIFFEIDs)
			}},
		{name: "HEALTH_CHECK_WORKLOAD_API", args: []string{"grpcs://localhost:9443"},
			env: map[string]string{"HEALTH_CHECK_WORKLOAD_API": "unix:///run/spire/agent.sock", "SPIFFE_ENDPOINT_SOCKET": "unix:///other.sock"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "unix:///run/spire/agent.sock", o.config.TLS.WorkloadAPI)
			}},
		{name: "SPIFFE_ENDPOINT_SOCKET with -spiffe-id", args: []string{"-spiffe-id", "spiffe://example.org", "https://localhost/"},
			env: map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/agent.sock"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "unix:///run/spire/agent.sock", o.config.TLS.WorkloadAPI)
			}},
		{name: "SPIFFE_ENDPOINT_SOCKET without -spiffe-id changes nothing", args: []string{"http://localhost/"},
			env:   map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/agent.sock"},
			check: func(t *testing.T, o *options) { assert.Empty(t, o.config.TLS.WorkloadAPI) }},
		{name: "SPIFFE_ENDPOINT_SOCKET does not replace -cert", args: []string{"-spiffe-id", "spiffe://example.org", "-cacert", "/ca", "-cert", "/c", "-key", "/k", "https://localhost/"},
			env:   map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/agent.sock"},
			check: func(t *testing.T, o *options) { assert.Empty(t, o.config.TLS.WorkloadAPI) }},
		{name: "gRPC metadata", args: []string{"-header", "Authorization: Bearer x", "-header", "X-Trace-Bin: AAE=", "grpc://localhost:9090"},
			check: func(t *testing.T, o *options) {
				assert.Equal(t, "Bearer x", http.Header(o.config.Header).Get("Authorization"))
			}},
		{name: "lower-case method", args: []string{"-method", "head", "http://localhost/"},
			check: func(t *testing.T, o *options) { assert.Equal(t, "HEAD", o.config.Method) }},
		{name: "-version needs no target", args: []string{"-version"}, check: func(t *testing.T, o *options) { assert.True(t, o.printVersion) }},
		{name: "-v", args: []string{"-v", "tcp://db:1"}, check: func(t *testing.T, o *options) { assert.True(t, o.verbose) }},
		{name: "no target", wantErr: "no target: give a URL, or -statusPort"},
		{name: "unknown flag", args: []string{"-port", "80"}, wantErr: "flag provided but not defined: -port"},
		{name: "bad duration", args: []string{"-timeout", "soon", "http://x/"}, wantErr: `invalid value "soon" for flag -timeout`},
		{name: "bad variable", env: map[string]string{"HEALTH_CHECK_RETRY": "many"}, wantErr: `invalid value "many" for HEALTH_CHECK_RETRY`},
		{name: "two URLs", args: []string{"http://a/", "http://b/"}, wantErr: "one target URL at most"},
		{name: "URL and a different -url", args: []string{"-url", "http://a/", "http://b/"}, wantErr: "two targets"},
		{name: "URL and -statusPort", args: []string{"-statusPort", "80", "http://b/"}, wantErr: "-statusPort builds a URL"},
		{name: "the environment's URL and -path together", env: map[string]string{"HEALTH_CHECK_URL": "http://b/", "HEALTH_CHECK_PATH": "/x"},
			wantErr: "HEALTH_CHECK_PATH builds a URL and HEALTH_CHECK_URL is one: set either, not both"},
		{name: "-url and -path on the command line", args: []string{"-url", "http://b/", "-path", "/x"}, wantErr: "-path builds a URL: give either it or a URL"},
		{name: "URL and -url on the command line, whatever the environment", args: []string{"-url", "http://a/", "http://b/"},
			env: map[string]string{"HEALTH_CHECK_URL": "http://a/"}, wantErr: "two targets"},
		{name: "bad header", args: []string{"-header", "nocolon", "http://b/"}, wantErr: "bad -header"},
		{name: "bad expect-status", args: []string{"-expect-status", "2xx", "http://b/"}, wantErr: "bad -expect-status"},
		{name: "client cert on plain http", args: []string{"-cert", "/c", "-key", "/k", "http://b/"}, wantErr: "-cert needs a TLS scheme"},
		{name: "negative retry", args: []string{"-retry", "-1", "http://b/"}, wantErr: "-retry must be 0 or more"},
		{name: "bad SPIFFE ID", args: []string{"-cacert", "/ca", "-spiffe-id", "spiffe://Example.org", "https://b/"}, wantErr: `bad -spiffe-id "spiffe://Example.org": a trust domain is lowercase`},
		{name: "-spiffe-id without a bundle", args: []string{"-spiffe-id", "spiffe://example.org", "https://b/"}, wantErr: "-spiffe-id needs the trust bundle"},
		{name: "bad -workload-api", args: []string{"-workload-api", "/run/agent.sock", "https://b/"}, wantErr: "want unix:///path/to/agent.sock"},
		{name: "bad -min-validity", args: []string{"-min-validity", "a week", "https://b/"}, wantErr: `invalid value "a week" for flag -min-validity`},
		{name: "reserved gRPC metadata", args: []string{"-header", "grpc-timeout: 1S", "grpc://b:1"}, wantErr: "grpc-timeout is the probe's to write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := parseOptions(tt.args, env(tt.env))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "\n")
				return
			}
			require.NoError(t, err)
			tt.check(t, opts)
		})
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"statusPort":    "HEALTH_CHECK_STATUS_PORT",
		"cacert":        "HEALTH_CHECK_CACERT",
		"expect-status": "HEALTH_CHECK_EXPECT_STATUS",
		"server-name":   "HEALTH_CHECK_SERVER_NAME",
		"v":             "HEALTH_CHECK_V",
	} {
		assert.Equal(t, want, envName(flagName))
	}
}

// TestHelp: -h lists every flag with its variable, and the three examples.
func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-h"}, env(nil), &stdout, &stderr)
	assert.Equal(t, 0, code)
	assert.Empty(t, stderr.String())
	help := stdout.String()
	newFlagSet().VisitAll(func(fl *flag.Flag) {
		assert.Regexp(t, `\n  -`+fl.Name+`[ \n]`, help)
		if !noEnv[fl.Name] {
			assert.Contains(t, help, "["+envName(fl.Name)+"]")
		}
	})
	assert.Contains(t, help, "health-check -cacert /certs/ca.crt -cert /certs/tls.crt -key /certs/tls.key https://localhost:8443/healthz")
	assert.Contains(t, help, "grpcs://localhost:9443")
	assert.Contains(t, help, `HEALTHCHECK --interval=10s --timeout=2s CMD ["/health-check"`)
	assert.Contains(t, help, "64 usage")
	for _, line := range strings.Split(help, "\n") {
		assert.LessOrEqual(t, len(line), 130, "help lines fit a terminal: %q", line)
	}
}

// TestWatchdogDelaySaturates: -timeout plus the watchdog's margin never wraps into a watchdog that fires
// at once, whatever timeout a library change lets through.
func TestWatchdogDelaySaturates(t *testing.T) {
	assert.Equal(t, probe.DefaultTimeout+watchdogMargin, watchdogDelay(probe.DefaultTimeout))
	assert.Equal(t, probe.MaxTimeout+watchdogMargin, watchdogDelay(probe.MaxTimeout))
	for _, huge := range []time.Duration{math.MaxInt64 - watchdogMargin + 1, math.MaxInt64 - 1, math.MaxInt64} {
		assert.Equal(t, time.Duration(math.MaxInt64), watchdogDelay(huge), "timeout %d", int64(huge))
	}
}

// TestUsageLinesFollowTheOutputRules: a usage error is one line of at most 512 bytes, with control
// characters replaced and a URL's user information and query redacted, like every failure line.
func TestUsageLinesFollowTheOutputRules(t *testing.T) {
	long := "http://localhost/" + strings.Repeat("x", 5000)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // the start of the line
	}{
		{name: "a flag name with a newline", args: []string{"-bad\nname", "http://localhost/"}, want: "usage: flag provided but not defined: -bad?name (see"},
		{name: "an escape in -url", args: []string{"-url", "ftp://\x1b[31mred/"}, want: `usage: bad URL "ftp://\x1b[31mred/": net/url: invalid control character in URL`},
		{name: "a 5,000-byte URL", args: []string{"-url", "ftp" + long[4:]}, want: `usage: bad URL "ftp://localhost/xxx`},
		{name: "a 5,000-byte flag", args: []string{"-" + strings.Repeat("f", 5000)}, want: "usage: flag provided but not defined: -fff"},
		{name: "a password and a token", args: []string{"http://u:hunter2@host/h?token=SECRET"},
			want: `usage: bad URL "http://…@host/h?…": user information is not supported`},
		{name: "two targets with secrets", args: []string{"-url", "http://host/?token=SECRET", "http://u:hunter2@host/"},
			want: "usage: two targets: -url http://host/?… and http://…@host/ (see health-check -h)"},
		{name: "a password in -host", args: []string{"-host", "u:hunter2@host", "-statusPort", "80"}, want: `usage: bad -host "…@host"`},
		{name: "a bad variable", env: map[string]string{"HEALTH_CHECK_TIMEOUT": "1s\n2s"}, args: []string{"http://localhost/"},
			want: `usage: invalid value "1s\n2s" for HEALTH_CHECK_TIMEOUT`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, env(tt.env), &stdout, &stderr)
			assert.Equal(t, probe.ExitUsage, code)
			assert.Empty(t, stdout.String())
			line := stderr.String()
			require.True(t, strings.HasSuffix(line, "\n"), line)
			line = strings.TrimSuffix(line, "\n")
			assert.NotContains(t, line, "\n", "one line")
			assert.LessOrEqual(t, len(line), 512)
			assert.True(t, strings.HasPrefix(line, tt.want), line)
			assert.True(t, strings.HasSuffix(line, " (see health-check -h)"), line)
			for _, secret := range []string{"hunter2", "SECRET", "\x1b"} {
				assert.NotContains(t, line, secret)
			}
		})
	}
}
