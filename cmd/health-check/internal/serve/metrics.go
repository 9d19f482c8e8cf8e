package serve

import (
	"strconv"
	"strings"

	"github.com/health-check-proxy/health-check-proxy/probe"
)

// metricsContentType is the Prometheus text exposition format, version 0.0.4.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// writeMetrics renders every check's counters, and the connections cut off, in the Prometheus text
// exposition format. Check names are [a-z0-9-]+, so label values need no escaping.
func writeMetrics(b *strings.Builder, checks []*check, cutOff uint64) {
	family := func(name, kind, help string) {
		b.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + kind + "\n")
	}
	sample := func(name, labels string, value uint64) {
		b.WriteString(name + "{" + labels + "} " + strconv.FormatUint(value, 10) + "\n")
	}

	family("health_check_probes_total", "counter", "Probes answered, by check; concurrent probes of a check share one upstream check.")
	for _, c := range checks {
		sample("health_check_probes_total", `check="`+c.Name+`"`, c.counters.probes.Load())
	}

	family("health_check_checks_total", "counter", "Upstream checks by result; busy: not made, the limit of upstream checks in flight was reached.")
	for _, c := range checks {
		for result := probe.Healthy; result <= probe.Usage; result++ {
			sample("health_check_checks_total", `check="`+c.Name+`",result="`+result.String()+`"`, c.counters.results[result].Load())
		}
		sample("health_check_checks_total", `check="`+c.Name+`",result="busy"`, c.counters.busy.Load())
	}

	family("health_check_upstream_seconds", "histogram", "Duration of upstream checks, all attempts included.")
	for _, c := range checks {
		var cumulative uint64
		for i := range c.counters.latency {
			cumulative += c.counters.latency[i].Load()
			bound := "+Inf"
			if i < len(latencyBuckets) {
				bound = strconv.FormatFloat(latencyBuckets[i], 'g', -1, 64)
			}
			sample("health_check_upstream_seconds_bucket", `check="`+c.Name+`",le="`+bound+`"`, cumulative)
		}
		seconds := float64(c.counters.latencyNanos.Load()) / 1e9
		b.WriteString(`health_check_upstream_seconds_sum{check="` + c.Name + `"} ` + strconv.FormatFloat(seconds, 'g', -1, 64) + "\n")
		sample("health_check_upstream_seconds_count", `check="`+c.Name+`"`, cumulative)
	}

	family("health_check_upstream_connections_total", "counter", "Upstream checks by whether they reused a kept-alive connection or opened a new one.")
	for _, c := range checks {
		var opened, reused uint64
		if reporter, ok := c.Checker.(ConnectionReporter); ok {
			opened, reused = reporter.UpstreamConnections()
		}
		sample("health_check_upstream_connections_total", `check="`+c.Name+`",reused="false"`, opened)
		sample("health_check_upstream_connections_total", `check="`+c.Name+`",reused="true"`, reused)
	}

	family("health_check_connections_cut_off_total", "counter",
		"Client connections closed to make room for a new one: at the limit, the one that waited longest on its client.")
	b.WriteString("health_check_connections_cut_off_total " + strconv.FormatUint(cutOff, 10) + "\n")
}
