// Command agent runs the archive agent on its own, so the benchmark measures
// the data path without depending on how the controller binary is assembled.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"platform.example.com/backup-operator/pkg/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
