//go:build embedprobe

package main

import "github.com/health-check-proxy/health-check-proxy/cmd/health-check/healthcheck"

// The one line (and the import) that puts the probe into the application.
func init() { healthCheck = healthcheck.Main }
