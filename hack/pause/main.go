// Command pause is the pod sandbox ("pause") process of the local development
// node (hack/local-cluster.sh). It holds the pod's namespaces open, reaps
// orphaned children when it runs as PID 1 of a shared PID namespace, and exits
// 0 on SIGTERM or SIGINT. It is built into a tiny image so that the node never
// needs to pull a sandbox image from a registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
