package podexec

import (
	"context"
	"io"
	"slices"
	"sync"
)

// Call is one Exec that Fake received.
type Call struct {
	Namespace, Pod, Container string
	Argv                      []string
}

// Fake is an Executor for tests of packages that run commands in pods: it records every call
// and answers with Run, so a test can write a stream, fail a hook or hang without a cluster.
// Its zero value answers every call with exit code 0 and no output. It is safe for concurrent use.
type Fake struct {
	// Run answers a call; its Result and error are returned as they are (set ExitCode and
	// return a *CommandError to imitate a failing command).
	Run func(call Call, stdout io.Writer) (Result, error)

	mu    sync.Mutex
	calls []Call
}

var _ Executor = (*Fake)(nil)

// Exec records the call and answers it with f.Run.
func (f *Fake) Exec(_ context.Context, namespace, pod string, cmd Command, stdout io.Writer) (Result, error) {
	call := Call{Namespace: namespace, Pod: pod, Container: cmd.Container, Argv: slices.Clone(cmd.Argv)}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
	if f.Run == nil {
		return Result{}, nil
	}
	return f.Run(call, stdout)
}

// Calls returns the calls received so far, in order, so a test can assert what ran where.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}
