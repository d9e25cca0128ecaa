// Command backup-controller is the backup operator's one binary. Without a subcommand it runs the
// controllers for BackupPolicy, Backup and Restore; "agent" runs the archive agent that the
// operator's Jobs start; "version" prints the version.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"platform.example.com/backup-operator/pkg/agent"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "agent":
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return agent.Run(ctx, args[1:], os.Stdout, os.Stderr)
		case "version":
			fmt.Println(agent.Version)
			return 0
		}
	}
	ctx, cancel := shutdownContext()
	defer cancel()
	if err := runController(ctx, args, os.Stderr); err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		fmt.Fprintf(os.Stderr, "backup-controller: %v\n", err)
		return 1
	}
	return 0
}

// shutdownContext is cancelled by the first SIGTERM or SIGINT, so the controllers finish the item
// in hand and stop; a second signal exits at once, for an operator who does not want to wait.
func shutdownContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		cancel()
		<-signals
		os.Exit(1)
	}()
	return ctx, func() {
		signal.Stop(signals)
		cancel()
	}
}
