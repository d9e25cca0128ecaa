package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
)

// EventHookFailed is the Warning Event of a hook that failed, whether or not it failed the
// Backup (onError Continue).
const EventHookFailed = "HookFailed"

// live reports whether b runs commands in the application's pod: a source command or hooks.
func live(b *platformv1.Backup) bool {
	h := b.Spec.Hooks
	return fromCommand(b) || (h != nil && len(h.Pre)+len(h.Post) > 0)
}

// fromCommand reports whether b archives a command's output instead of the claim's files.
func fromCommand(b *platformv1.Backup) bool {
	return b.Spec.Source != nil && b.Spec.Source.Command != nil
}

// execTarget chooses the pod that runs b's source command and hooks: the one running pod that
// mounts the claim. It returns the agent's arguments for it; a Backup that has no such pod, or
// more than one, or no ServiceAccount to exec with, fails with ok false.
func (c *Controller) execTarget(ctx context.Context, b *platformv1.Backup, claim *corev1.PersistentVolumeClaim, events *[]agentjob.Event) (args []string, node string, ok bool, err error) {
	if b.Spec.ExecServiceAccountName == "" {
		c.fail(b, platformv1.ReasonInvalidArgument, "source.command and hooks run from the agent's pod as the ServiceAccount named in execServiceAccountName, and none is set: "+
			"create a ServiceAccount with get on pods and create on pods/exec in this namespace (manifests/examples/exec-rbac.yaml), name it in the policy, and create a new Backup.", events)
		return nil, "", false, nil
	}
	users, err := agentjob.ClaimUsers(ctx, c.deps.KubeClient, b.Namespace, claim.Name)
	if err != nil {
		return nil, "", false, err
	}
	var running []string
	for _, u := range users {
		if u.Running {
			running = append(running, u.Pod)
		}
	}
	switch len(running) {
	case 0:
		c.fail(b, platformv1.ReasonNoRunningPod, fmt.Sprintf("No running pod mounts PersistentVolumeClaim %s: a source command and hooks run in the application's own pod, never in a guessed one. "+
			"Start the application and create a new Backup, or back the claim up without source.command and hooks.", claim.Name), events)
		return nil, "", false, nil
	case 1:
	default:
		c.fail(b, platformv1.ReasonPodNotUnique, fmt.Sprintf("Pods %s all mount PersistentVolumeClaim %s and run, so which one runs the command and hooks would be a guess: "+
			"back up a claim that one pod mounts, such as a StatefulSet replica's own claim.", strings.Join(running, ", "), claim.Name), events)
		return nil, "", false, nil
	}
	args = []string{"--exec-pod", running[0]}
	if fromCommand(b) {
		args = append(args, "--command", jsonArg(b.Spec.Source.Command), "--exec-service-account", b.Spec.ExecServiceAccountName)
	}
	if b.Spec.Hooks != nil {
		args = append(args, "--hooks", jsonArg(b.Spec.Hooks))
	}
	return args, "", true, nil
}

// jsonArg is v as the agent reads it from its command line. API types always encode.
func jsonArg(v any) string {
	doc, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", v, err))
	}
	return string(doc)
}

// recordSource writes what b's archive was read from and the hooks that ran, as the agent
// reported them, with a Warning Event for each failed hook.
func recordSource(b *platformv1.Backup, r *agent.BackupResult, events *[]agentjob.Event) {
	if r == nil {
		return
	}
	switch {
	case r.Source != nil:
		b.Status.Source = r.Source.DeepCopy()
	case fromSnapshot(b):
		b.Status.Source = &platformv1.SourceStatus{Type: platformv1.SourceSnapshot}
	default:
		b.Status.Source = &platformv1.SourceStatus{Type: platformv1.SourceVolume}
	}
	b.Status.Hooks = nil
	for _, h := range r.Hooks {
		b.Status.Hooks = append(b.Status.Hooks, *h.DeepCopy())
		if h.Result == platformv1.HookFailed {
			*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventHookFailed,
				Message: fmt.Sprintf("%s hook %d in container %s failed: %s", h.Phase, h.Index, h.Container, h.Message)})
		}
	}
}
