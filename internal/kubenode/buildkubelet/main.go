// Command buildkubelet builds the kubelet the e2e test and `bench -serve-cpu -kubelet` run (release
// kubenode.KubeletVersion, or KUBELET_VERSION) into its cache, unless it is there, and prints its
// path. .ci/run starts it early, beside the lint gate, so the test finds it built.
//
// With -check it builds nothing: it prints why this machine cannot run a kubelet
// (kubenode.MachineCanRun), or nothing when it can, and exits 0 either way; .ci/run asks it whether
// to install containerd and require the kubelet e2e.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/health-check-proxy/health-check-proxy/internal/kubenode"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-check" {
		if err := kubenode.MachineCanRun(); err != nil {
			fmt.Println(err)
		}
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: buildkubelet [-check] (KUBELET_VERSION and KUBELET_CACHE set the release and the cache)")
		os.Exit(64)
	}
	path, err := kubenode.Build(context.Background(), kubenode.Version(), os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildkubelet:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
