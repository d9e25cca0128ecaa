package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/podexec"
)

// Reasons of a backup that runs commands in the application's pod.
const (
	// ExecForbidden: the agent's ServiceAccount may not exec into the pod; the message names the
	// permission to grant.
	ExecForbidden Reason = "ExecForbidden"
	// PodNotRunning: the pod that mounts the claim is not running the container the command or
	// hook names.
	PodNotRunning Reason = "PodNotRunning"
	// CommandFailed: the source command exited non-zero, timed out or broke its stream.
	CommandFailed Reason = "CommandFailed"
	// HookFailed: a hook with onError Fail failed.
	HookFailed Reason = "HookFailed"
	// StreamFailed: the source command's output was not what its format says.
	StreamFailed = archive.StreamFailed
)

// Bounds of what the result carries of a hook: the termination message holds 4 KiB in all.
const (
	hookMessageMax = 512
	hookOutputMax  = 256
)

// liveFlags are the backup flags of a run that execs into the application's pod.
type liveFlags struct {
	pod     string
	command jsonFlag[platformv1.CommandSource]
	hooks   jsonFlag[platformv1.BackupHooks]
}

func (f *liveFlags) add(c *command) {
	c.fs.StringVar(&f.pod, "exec-pod", "", "pod, in --namespace, that mounts the claim and runs --command and --hooks")
	c.fs.Var(&f.command, "command", "JSON of the policy's source.command: archive its standard output instead of --source")
	c.fs.Var(&f.hooks, "hooks", "JSON of the policy's hooks: {\"pre\": [...], \"post\": [...]}")
}

// used reports whether the run execs at all.
func (f *liveFlags) used() bool {
	return f.command.v != nil || (f.hooks.v != nil && len(f.hooks.v.Pre)+len(f.hooks.v.Post) > 0)
}

// jsonFlag is a flag whose value is a JSON document, as the controller writes it.
type jsonFlag[T any] struct{ v *T }

func (j *jsonFlag[T]) String() string {
	if j == nil || j.v == nil {
		return ""
	}
	b, _ := json.Marshal(j.v)
	return string(b)
}

func (j *jsonFlag[T]) Set(s string) error {
	var v T
	d := json.NewDecoder(strings.NewReader(s))
	d.DisallowUnknownFields()
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("not a valid JSON document: %w", err)
	}
	j.v = &v
	return nil
}

// newExecutor connects to the API server as the pod's ServiceAccount. It is a variable so that
// tests can run the agent against a fake clientset and a fake executor.
var newExecutor = func() (kubernetes.Interface, podexec.Executor, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("no in-cluster API credentials (%w): the agent runs commands as the ServiceAccount named in execServiceAccountName, whose token must be mounted", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	ex, err := podexec.New(cfg)
	return client, ex, err
}

// live runs a backup's hooks and source command in the application's pod, and records them.
type live struct {
	ns, pod, claim string
	flags          *liveFlags
	client         kubernetes.Interface
	exec           podexec.Executor
	res            *BackupResult

	postRan bool
	preRan  bool
}

// prepare checks, before anything runs, that the agent may exec and that the pod runs every
// container a hook or the command names.
func (l *live) prepare(ctx context.Context) error {
	if l.pod == "" {
		return &archive.Error{Reason: archive.InvalidArgument, Msg: "--command and --hooks need --exec-pod: the pod that mounts the claim"}
	}
	if l.ns == "" {
		return &archive.Error{Reason: archive.InvalidArgument, Msg: "--command and --hooks need --namespace: the namespace of the pod"}
	}
	if err := classify(podexec.CheckAccess(ctx, l.client, l.ns)); err != nil {
		return err
	}
	seen := map[string]bool{}
	check := func(container string) error {
		if seen[container] {
			return nil
		}
		seen[container] = true
		return classify(podexec.RunningContainer(ctx, l.client, l.ns, l.pod, container, l.claim))
	}
	if c := l.flags.command.v; c != nil {
		if err := check(c.Container); err != nil {
			return err
		}
	}
	if h := l.flags.hooks.v; h != nil {
		for _, hk := range append(append([]platformv1.Hook{}, h.Pre...), h.Post...) {
			if err := check(hk.Container); err != nil {
				return err
			}
		}
	}
	return nil
}

// classify gives an exec failure its reason.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var fe *podexec.ForbiddenError
	var pe *podexec.PodError
	var ce *podexec.CommandError
	switch {
	case errors.As(err, &fe):
		return &archive.Error{Reason: ExecForbidden, Msg: fe.Error()}
	case errors.As(err, &pe):
		return &archive.Error{Reason: PodNotRunning, Msg: pe.Error()}
	case errors.As(err, &ce):
		return &archive.Error{Reason: CommandFailed, Msg: ce.Error()}
	case errors.Is(err, context.Canceled):
		return &archive.Error{Reason: archive.Canceled, Msg: "the agent was stopped while a command ran", Err: err}
	}
	return &archive.Error{Reason: CommandFailed, Msg: "cannot run the command in the pod", Err: err}
}

// runHooks runs one list of hooks in order. It returns the first failure of a hook whose
// onError is Fail, and stops there; a failure under Continue is recorded and the list goes on.
func (l *live) runHooks(ctx context.Context, phase platformv1.HookPhase, hooks []platformv1.Hook) error {
	for i, h := range hooks {
		timeout := platformv1.DefaultHookTimeoutSeconds
		if h.TimeoutSeconds != nil {
			timeout = *h.TimeoutSeconds
		}
		out := podexec.NewTail(hookOutputMax)
		res, err := l.exec.Exec(ctx, l.ns, l.pod, podexec.Command{Container: h.Container, Argv: h.Command, Timeout: time.Duration(timeout) * time.Second}, out)
		st := platformv1.HookStatus{
			Phase: phase, Index: int32(i), Container: h.Container, Result: platformv1.HookSucceeded,
			Duration: &metav1.Duration{Duration: res.Duration.Round(time.Millisecond)},
		}
		if res.ExitCode >= 0 && (err == nil || isCommandError(err)) {
			st.ExitCode = ptr.To(int32(res.ExitCode))
		}
		if s := strings.TrimSpace(out.String() + "\n" + res.Stderr); s != "" {
			st.OutputTail = lastBytes(s, hookOutputMax)
		}
		if err != nil {
			err = classify(err)
			st.Result = platformv1.HookFailed
			st.Message = lastBytes(err.Error(), hookMessageMax)
		}
		l.res.Hooks = append(l.res.Hooks, st)
		if err != nil && h.OnError != platformv1.HookContinue {
			var ae *archive.Error
			if errors.As(err, &ae) && (ae.Reason == ExecForbidden || ae.Reason == PodNotRunning || ae.Reason == archive.Canceled) {
				return err
			}
			return &archive.Error{Reason: HookFailed, Msg: fmt.Sprintf("%s hook %d failed: %s", phase, i, err.Error())}
		}
	}
	return nil
}

// pre runs the pre hooks.
func (l *live) pre(ctx context.Context) error {
	if l.flags.hooks.v == nil || len(l.flags.hooks.v.Pre) == 0 {
		return nil
	}
	l.preRan = true
	return l.runHooks(ctx, platformv1.HookPre, l.flags.hooks.v.Pre)
}

// post runs the post hooks, once.
func (l *live) post(ctx context.Context) error {
	if l.postRan || l.flags.hooks.v == nil || len(l.flags.hooks.v.Post) == 0 {
		return nil
	}
	l.postRan = true
	return l.runHooks(ctx, platformv1.HookPost, l.flags.hooks.v.Post)
}

// stream returns the source command's standard output, and a func that waits for the command
// to end and says how it did. The command starts on the first read, once the archive's storage
// is ready, so a storage that refuses the archive never costs the application a backup. The
// command's exit, not the end of its output, decides: the archive is published only after wait
// returns nil.
func (l *live) stream(ctx context.Context) (io.Reader, func() error) {
	c := l.flags.command.v
	var timeout time.Duration
	if c.TimeoutSeconds != nil {
		timeout = time.Duration(*c.TimeoutSeconds) * time.Second
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var start sync.Once
	started := false
	run := func() {
		started = true
		go func() {
			_, err := l.exec.Exec(ctx, l.ns, l.pod, podexec.Command{Container: c.Container, Argv: c.Command, Timeout: timeout}, pw)
			if err != nil {
				pw.CloseWithError(err)
			} else {
				pw.Close()
			}
			done <- err
		}()
	}
	var once sync.Once
	var result error
	wait := func() error {
		once.Do(func() {
			// Whatever is still unread is of no use now; closing lets a blocked command end.
			pr.CloseWithError(errStoppedReading)
			start.Do(func() {}) // a command that has not started never will
			if !started {
				return
			}
			err := <-done
			if errors.Is(err, errStoppedReading) {
				// The backup stopped first, and its own error says why.
				return
			}
			result = classify(err)
		})
		return result
	}
	return readerFunc(func(p []byte) (int, error) {
		start.Do(run)
		return pr.Read(p)
	}), wait
}

// readerFunc is a func as an io.Reader.
type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// errStoppedReading ends a command whose output the backup no longer reads, because it failed.
var errStoppedReading = errors.New("the backup stopped reading the command's output")

// sourceStatus records the command source in the result.
func (l *live) sourceStatus() *platformv1.SourceStatus {
	c := l.flags.command.v
	return &platformv1.SourceStatus{Type: platformv1.SourceCommand, Pod: l.pod, Container: c.Container, Command: c.Command, Format: c.Format}
}

func isCommandError(err error) bool {
	var ce *podexec.CommandError
	return errors.As(err, &ce) && !ce.TimedOut
}

// lastBytes is the end of s, at most n bytes, cut at a rune boundary.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for i := 0; i < len(s) && i < 4; i++ {
		if s[i]&0xc0 != 0x80 {
			return "…" + s[i:]
		}
	}
	return "…" + s
}
