package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCrossCompileListIsTheReleasesPlatforms: .ci/cross-compile builds the probe for each line of
// .ci/platforms, and a release ships the probe for defaultBinaryPlatforms (the image's platforms and
// the desktops'); the two lists are one, so that CI builds exactly what a release ships.
func TestCrossCompileListIsTheReleasesPlatforms(t *testing.T) {
	data, err := os.ReadFile("../../.ci/platforms")
	require.NoError(t, err)
	var listed []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			listed = append(listed, line)
		}
	}
	assert.Equal(t, defaultBinaryPlatforms(), listed, ".ci/platforms, in the release's order")
}
