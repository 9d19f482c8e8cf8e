// Command pause is the pod sandbox's process in the kubelet tests (containerd's CRI starts one per
// pod, kubenode.PauseImage): it holds the pod's namespaces until SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
