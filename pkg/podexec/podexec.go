// Package podexec runs commands inside application pods, the way `kubectl exec` does, so the
// agent can take application-consistent backups (pg_basebackup writing a tar to standard output)
// and run hooks, and it turns each way that can fail into an error that says what to fix.
package podexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// stderrTail is how much of a command's standard error is kept: enough for the error message
// of a failing tool, small enough to put in a status condition.
const stderrTail = 4 << 10

// Command is one program to run in a container; Argv is run directly, not through a shell.
type Command struct {
	Container string
	Argv      []string
	// Timeout bounds the whole command; 0 means none, so a hung command holds the agent
	// until its Job's activeDeadlineSeconds.
	Timeout time.Duration
}

// Result is what is known about a command once Exec returns, whether or not it succeeded, so
// callers can report it either way.
type Result struct {
	// ExitCode is the command's exit status, or -1 when it is unknown (timeout, exec failed).
	ExitCode int
	// Stderr is the last 4 KiB of standard error, trimmed.
	Stderr   string
	Duration time.Duration
	// Stdout is how many bytes were written to the caller's writer.
	Stdout int64
}

// Executor runs commands in pods; it is an interface so that packages using it can be tested
// with Fake instead of a cluster.
type Executor interface {
	// Exec runs cmd in the pod, streaming its standard output to stdout. It returns a
	// *CommandError if the command exited non-zero or timed out, a *ForbiddenError if the
	// agent may not exec there, and another error if the exec could not run or stdout failed.
	Exec(ctx context.Context, namespace, pod string, cmd Command, stdout io.Writer) (Result, error)
}

// CommandError means the command ran but failed, so the fix lies in the application or the
// command, not in Kubernetes.
type CommandError struct {
	Namespace, Pod, Container string
	Argv                      []string
	ExitCode                  int // -1 if TimedOut
	Stderr                    string
	// TimedOut is set when the command outlived Command.Timeout and its stream was closed.
	TimedOut bool
	Timeout  time.Duration
}

func (e *CommandError) Error() string {
	where := fmt.Sprintf("command %q in pod %s/%s, container %s,", strings.Join(e.Argv, " "), e.Namespace, e.Pod, e.Container)
	var msg string
	if e.TimedOut {
		msg = fmt.Sprintf("%s did not finish within %s; its stream was closed, which ends most programs "+
			"(Kubernetes cannot signal an exec'd process): raise the timeout or find out why it hangs", where, e.Timeout)
	} else {
		msg = fmt.Sprintf("%s exited with code %d", where, e.ExitCode)
	}
	if e.Stderr == "" {
		return msg + " and wrote nothing to standard error"
	}
	return msg + ": " + e.Stderr
}

// errTimedOut is the cause of a context ended by Command.Timeout, told apart from the caller's
// own cancellation.
var errTimedOut = errors.New("podexec: command timed out")

type executor struct {
	config *rest.Config
	client kubernetes.Interface

	mu      sync.Mutex
	allowed map[string]bool // namespaces where CheckAccess passed
}

// New returns the Executor the agent uses, talking to the API server of config the way kubectl
// does: WebSocket first, SPDY when the server or a proxy cannot upgrade to WebSocket.
func New(config *rest.Config) (Executor, error) {
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client for exec: %w", err)
	}
	return &executor{config: config, client: client, allowed: map[string]bool{}}, nil
}

func (e *executor) Exec(ctx context.Context, namespace, pod string, cmd Command, stdout io.Writer) (Result, error) {
	res := Result{ExitCode: -1}
	if err := e.checkAccess(ctx, namespace); err != nil {
		return res, err
	}
	streamer, err := e.streamer(namespace, pod, cmd)
	if err != nil {
		return res, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if cmd.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, cmd.Timeout, errTimedOut)
		defer stop()
	}
	out := &guardedWriter{w: stdout, cancel: cancel}
	stderr := NewTail(stderrTail)

	start := time.Now()
	err = streamer.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out, Stderr: stderr})
	res.Duration = time.Since(start)
	// client-go's copy goroutines can outlive StreamWithContext when ctx ends; close the writer
	// so nothing reaches the caller's stdout after Exec returns.
	n, werr := out.close()
	res.Stdout = n
	res.Stderr = stderr.String()

	var exitErr utilexec.ExitError
	cmdErr := &CommandError{Namespace: namespace, Pod: pod, Container: cmd.Container, Argv: cmd.Argv, ExitCode: -1, Stderr: res.Stderr}
	switch {
	case werr != nil:
		// client-go logs a failed stdout write and discards the rest of the output, so the
		// command would seem to succeed with a truncated archive: report the write error.
		return res, fmt.Errorf("writing the standard output of %q from pod %s/%s: %w", strings.Join(cmd.Argv, " "), namespace, pod, werr)
	case err == nil:
		res.ExitCode = 0
		return res, nil
	case errors.As(err, &exitErr) && exitErr.Exited():
		res.ExitCode = exitErr.ExitStatus()
		cmdErr.ExitCode = res.ExitCode
		return res, cmdErr
	case errors.Is(context.Cause(ctx), errTimedOut):
		// Only the stream is closed: Kubernetes has no way to signal an exec'd process, and
		// closing its standard output and error ends most programs (with SIGPIPE or EPIPE) the
		// next time they write; one that writes nothing runs on in the container.
		cmdErr.TimedOut, cmdErr.Timeout = true, cmd.Timeout
		return res, cmdErr
	case ctx.Err() != nil:
		return res, fmt.Errorf("running %q in pod %s/%s was canceled: %w", strings.Join(cmd.Argv, " "), namespace, pod, context.Cause(ctx))
	case forbidden(err):
		return res, &ForbiddenError{Namespace: namespace, Missing: []string{permExec.name}, Err: err}
	}
	return res, fmt.Errorf("running %q in pod %s/%s, container %s: %w; check that the container is running and that the API server can reach its node",
		strings.Join(cmd.Argv, " "), namespace, pod, cmd.Container, err)
}

// checkAccess runs CheckAccess once per namespace; a denial is not remembered, so a Role
// granted after a failed backup is seen by the next one.
func (e *executor) checkAccess(ctx context.Context, namespace string) error {
	e.mu.Lock()
	ok := e.allowed[namespace]
	e.mu.Unlock()
	if ok {
		return nil
	}
	if err := CheckAccess(ctx, e.client, namespace); err != nil {
		return err
	}
	e.mu.Lock()
	e.allowed[namespace] = true
	e.mu.Unlock()
	return nil
}

// streamer builds the same executor kubectl exec does. The WebSocket request must be a GET
// (RFC 6455; the API server authorizes it as create pods/exec), the SPDY request a POST.
func (e *executor) streamer(namespace, pod string, cmd Command) (remotecommand.Executor, error) {
	u := e.client.CoreV1().RESTClient().Post().Namespace(namespace).Resource("pods").Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: cmd.Container, Command: cmd.Argv, Stdout: true, Stderr: true}, scheme.ParameterCodec).
		URL()
	spdyExec, err := remotecommand.NewSPDYExecutor(e.config, "POST", u)
	if err != nil {
		return nil, fmt.Errorf("creating the SPDY exec client: %w", err)
	}
	wsExec, err := remotecommand.NewWebSocketExecutor(e.config, "GET", u.String())
	if err != nil {
		return nil, fmt.Errorf("creating the WebSocket exec client: %w", err)
	}
	return remotecommand.NewFallbackExecutor(wsExec, spdyExec, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// forbidden reports whether err is the API server's 403 on either transport. The WebSocket
// executor returns an *httpstream.UpgradeFailureError whose Cause is the *apierrors.StatusError,
// and UpgradeFailureError has no Unwrap, so apierrors.IsForbidden does not see it; the fallback
// executor then retries over SPDY, whose 403 is a bare *apierrors.StatusError.
func forbidden(err error) bool {
	var upgrade *httpstream.UpgradeFailureError
	if errors.As(err, &upgrade) {
		err = upgrade.Cause
	}
	return apierrors.IsForbidden(err)
}

// guardedWriter counts what reaches w, stops the exec on the first write error and drops
// writes once closed.
type guardedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	n      int64
	err    error
	closed bool
	cancel context.CancelCauseFunc
}

func (g *guardedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, io.ErrClosedPipe
	}
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.w.Write(p)
	g.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		g.err = err
		g.cancel(err)
	}
	return n, err
}

func (g *guardedWriter) close() (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return g.n, g.err
}

// Tail keeps the last bytes written to it: a tool's error is at the end of its output, and a
// chatty one must not grow the agent's memory. It is safe for concurrent writes.
type Tail struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

// NewTail keeps the last max bytes.
func NewTail(max int) *Tail { return &Tail{max: max} }

// Write keeps the end of what was written so far.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p, t.truncated = p[len(p)-t.max:], true
	}
	if drop := len(t.buf) + len(p) - t.max; drop > 0 {
		t.buf, t.truncated = append(t.buf[:0], t.buf[drop:]...), true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String returns the tail, trimmed, with "..." in front if earlier output was dropped.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The cut may split a UTF-8 sequence.
	s := strings.TrimSpace(strings.ToValidUTF8(string(t.buf), ""))
	if t.truncated && s != "" {
		return "..." + s
	}
	return s
}
