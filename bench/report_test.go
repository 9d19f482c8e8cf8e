package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []int64
		want int64
	}{
		{"none", nil, 0},
		{"one", []int64{7}, 7},
		{"odd count, unsorted", []int64{9, 1, 5}, 5},
		{"even count takes the mean of the middle two", []int64{4, 1, 10, 2}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, median(tt.in))
		})
	}
}

func TestMedianLeavesInputAlone(t *testing.T) {
	in := []time.Duration{3, 1, 2}
	assert.Equal(t, time.Duration(2), median(in))
	assert.Equal(t, []time.Duration{3, 1, 2}, in)
}

func TestPairedRatio(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		a, b   []time.Duration
		want   float64
		wantOK bool
	}{
		// The medians alone would give 2/2 = 1; the per-round ratios say a is half of b.
		{"pairs rounds", []time.Duration{1 * ms, 2 * ms, 4 * ms}, []time.Duration{2 * ms, 4 * ms, 8 * ms}, 0.5, true},
		{"median of the ratios", []time.Duration{1 * ms, 3 * ms, 9 * ms}, []time.Duration{1 * ms, 1 * ms, 1 * ms}, 3, true},
		{"lengths differ", []time.Duration{ms}, []time.Duration{ms, ms}, 0, false},
		{"empty", nil, nil, 0, false},
		{"zero divisor", []time.Duration{ms}, []time.Duration{0}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := pairedRatio(tt.a, tt.b)
			assert.Equal(t, tt.wantOK, ok)
			assert.InDelta(t, tt.want, got, 1e-9)
		})
	}
}

func TestGoPackage(t *testing.T) {
	tests := []struct {
		name, symbol, file, want string
	}{
		{"method", "crypto/tls.(*Conn).Handshake", "./crypto/tls/conn.go", "crypto/tls"},
		{"nested package", "crypto/internal/fips140/mlkem.kemEncaps", "", "crypto/internal/fips140/mlkem"},
		{"single-element package", "runtime.mallocgc", "./runtime/malloc.go", "runtime"},
		{"module package", "github.com/health-check-proxy/health-check-proxy/probe.Run", "", "github.com/health-check-proxy/health-check-proxy/probe"},
		{"generic function", "slices.Sort[go.shape.int]", "", "slices"},
		{"file-local assembly takes its file's directory", "p256MulInternal", "./crypto/internal/fips140/nistec/p256_asm_amd64.s", "crypto/internal/fips140/nistec"},
		{"no symbol", "0x0000000000401000", "???", "(no symbol)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, goPackage(tt.symbol, tt.file))
		})
	}
}

func TestSelfCostByPackage(t *testing.T) {
	// Shaped like callgrind's output with name compression and relative positions.
	const out = `version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1111

ob=(1) /bin/floor
fl=(1) ./crypto/tls/conn.go
fn=(1) crypto/tls.(*Conn).Handshake
10 100
+2 5
cfl=(2) ./crypto/internal/fips140/mlkem/mlkem.go
cfn=(2) crypto/internal/fips140/mlkem.kemEncaps
calls=1 20
+1 1000
* 6

fl=(2)
fn=(2)
20 3
fl=(3) ./crypto/internal/fips140/nistec/p256_asm_amd64.s
fn=(3) p256MulInternal
5 7
`
	costs, err := selfCostByPackage(strings.NewReader(out))
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{
		"crypto/tls":                     111, // 100 + 5 + 6, not the call's inclusive 1000
		"crypto/internal/fips140/mlkem":  3,
		"crypto/internal/fips140/nistec": 7,
	}, costs)
}

func TestRender(t *testing.T) {
	ms := time.Millisecond
	row := "ECDSA P-256"
	res := func(check, name string, cpu time.Duration, rss, instructions int64) *result {
		return &result{
			cmd:          &command{row: row, check: check, name: name, path: "/tmp/x/" + name, args: []string{"-v"}},
			cpu:          []time.Duration{cpu, cpu},
			sys:          []time.Duration{cpu / 2, cpu / 2},
			faults:       []int64{rss / 16, rss / 16},
			wall:         []time.Duration{2 * cpu, 2 * cpu},
			rssKiB:       []int64{rss, rss},
			instructions: instructions,
		}
	}
	rep := &report{
		date:      time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		machine:   "AMD EPYC, nproc 2",
		goVersion: "go1.26.8 linux/amd64",
		command:   "go run ./bench -n 2",
		commit:    "abc1234",
		load:      "0.10 → 0.20",
		rounds:    2,
		warmup:    1,
		rows:      []string{row},
		results: []*result{
			res(checkHTTPS, probeName, 2*ms, 4096, 3_500_000),
			res(checkHTTPS, floorName, 4*ms, 5120, 7_000_000),
			res(checkHTTPS, curlName, 10*ms, 10240, 0),
			res(checkGRPC, probeName, 3*ms, 4096, 0),
			res(checkGRPC, ghpName, 12*ms, 12288, 0),
		},
		sizes: []binarySize{{name: probeName, bytes: 6_000_000}, {name: curlName, bytes: 300_000, extra: "1.00 MB in 3 shared libraries"}},
	}
	var b strings.Builder
	rep.render(&b)
	md := b.String()

	for _, want := range []string{
		"2026-11-25 12:00 UTC · AMD EPYC, nproc 2 · go1.26.8 linux/amd64 · health-check at abc1234 · load average 0.10 → 0.20",
		"`go run ./bench -n 2`",
		"| ECDSA P-256 | HTTPS | health-check | 2.00 ms | 1.00 ms | 4.00 ms | 4.0 MiB | 256 | 3.50 M |",
		"| ECDSA P-256 | HTTPS | curl | 10.00 ms | 5.00 ms | 20.00 ms | 10.0 MiB | 640 | — |",
		"| instructions, probe / floor (HTTPS) | ≤ 0.80 | 0.50 ✓ |",
		"| CPU, probe / floor (HTTPS, median of paired runs) | ≤ 0.80 | 0.50 ✓ |",
		"| CPU, probe / curl (HTTPS, median of paired runs) | ≤ 0.45 | 0.20 ✓ |",
		"| CPU, probe / grpc-health-probe (gRPC, median of paired runs) | ≤ 0.50 | 0.25 ✓ |",
		"| peak RSS, probe / floor (HTTPS, medians) | ≤ 1.00 | 0.80 ✓ |",
		"| instructions, probe / curl (HTTPS) | — | — |",
		"| health-check | 6.00 MB | ≤ 6.5 MB ✓ |",
		"| curl | 0.30 MB + 1.00 MB in 3 shared libraries |  |",
		"health-check -v\n",
	} {
		assert.Contains(t, md, want)
	}
	assert.NotContains(t, md, "baseline", "baseline rows without a baseline")
}

// TestRenderEmbedded: with -embedded, the probe run through the application is compared with
// health-check's own, and the sizes say what the probe added to the application.
func TestRenderEmbedded(t *testing.T) {
	row := "ECDSA P-256"
	res := func(name string, cpu time.Duration, rss, instructions int64) *result {
		return &result{
			cmd:          &command{row: row, check: checkHTTPS, name: name, path: "/tmp/x/" + name},
			cpu:          []time.Duration{cpu, cpu},
			wall:         []time.Duration{2 * cpu, 2 * cpu},
			rssKiB:       []int64{rss, rss},
			instructions: instructions,
		}
	}
	sizes := withProbeAdded([]binarySize{{name: probeName, bytes: 5_000_000}, {name: appAloneName, bytes: 6_000_000}, {name: appName, bytes: 6_500_000}})
	rep := &report{rows: []string{row}, embedded: true, sizes: sizes, results: []*result{
		res(probeName, 4*time.Millisecond, 4096, 5_000_000),
		res(embeddedName, 6*time.Millisecond, 5120, 5_500_000),
	}}
	var b strings.Builder
	rep.render(&b)
	md := b.String()
	for _, want := range []string{
		"| instructions, app health-check / probe (HTTPS) | — | 1.10 |",
		"| CPU, app health-check / probe (HTTPS, median of paired runs) | — | 1.50 |",
		"| wall, app health-check / probe (HTTPS, median of paired runs) | — | 1.50 |",
		"| peak RSS, app health-check / probe (HTTPS, medians) | — | 1.25 |",
		"| app + health-check | 6.50 MB |  |",
		"| what the probe adds to the app (0.10 × health-check) | 0.50 MB |  |",
	} {
		assert.Contains(t, md, want)
	}

	rep.embedded = false
	b.Reset()
	rep.render(&b)
	assert.NotContains(t, b.String(), "app health-check /", "embedded rows without -embedded")
}

func TestRenderMarksMissedTargets(t *testing.T) {
	assert.Equal(t, "0.84 ✗", formatRatio(0.84, true, 0.60))
	assert.Equal(t, "0.60 ✓", formatRatio(0.60, true, 0.60))
	assert.Equal(t, "1.30", formatRatio(1.3, true, 0))
	assert.Equal(t, "—", formatRatio(0, false, 0.6))
}

func TestRenderServeCPU(t *testing.T) {
	mode := func(name string, checks int, busy, serve, bench float64) *serveMode {
		m := &serveMode{name: name, checks: checks, busy: busy, wall: time.Second}
		m.own[groupServe], m.own[groupBench] = serve, bench
		return m
	}
	modes := []*serveMode{
		mode("(a) exec", 10, 100, 0, 100),        // 100 ms a check
		mode("(b) process", 100, 80, 0, 80),      // 8 ms
		mode("(c) serve", 1000, 100, 40, 60),     // 1 ms, serve 0.4
		mode("(d) naive", 1000, 150, 0, 60),      // 1.5 ms, the naive sidecar 0.9
		mode("(c) at HEAD~1", 1000, 125, 60, 65), // 1.25 ms, serve 0.6
	}
	modes[3].own[groupNaive] = 90
	memory := []sidecarMemory{{sidecar: "serve", anonAfterOneGET: 2048, rssAfterOneGET: 8192, anonymous: 3584, rss: 9728}}
	var without strings.Builder
	renderServeCPU(&without, modes[:4], memory, 0, "0.1 → 0.1", "abc")
	assert.Contains(t, without.String(), "| (c) / (a): serve vs exec probe | 1/100 | 1/100 | ≤ 1/100 ✓ |")
	assert.Contains(t, without.String(), "| (c) / (b): serve vs the probe process | 1/8 | 1/8 | ≤ 1/10 ✗ |")
	assert.NotContains(t, without.String(), "before/after")
	assert.Contains(t, without.String(), "| (c) / (d) | 0.67× | 0.67× | 0.44× | ≤ 0.50× ✓ |")
	assert.Contains(t, without.String(), "| serve | 2.00 MiB | 3.50 MiB | 8.00 MiB | 9.50 MiB |")

	var with strings.Builder
	renderServeCPU(&with, modes, nil, 0, "0.1 → 0.1", "abc")
	assert.Contains(t, with.String(), "| (c) serve vs (c) at HEAD~1 | 0.80× | 0.80× | 0.67× |")
}
