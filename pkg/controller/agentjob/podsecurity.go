package agentjob

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// LabelPodSecurityEnforce is the namespace label whose Pod Security level the API server
// enforces on every pod created there.
const LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"

// baselineCapabilities are the capabilities Pod Security "baseline" lets a container add.
var baselineCapabilities = []corev1.Capability{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
	"SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

// PodSecurityRefusal says why the Pod Security level that spec's namespace enforces would refuse
// the agent pod New builds from spec, or nil. The Job controller would only record each refused
// pod as an Event on the Job, and the run would wait out its pending deadline; this says at once
// what to set. A namespace that cannot be read is no reason to refuse: admission decides then.
func PodSecurityRefusal(ctx context.Context, client kubernetes.Interface, spec Spec) *Refusal {
	if spec.Settings.AgentSecurityContext != nil {
		return nil
	}
	ns, err := client.CoreV1().Namespaces().Get(ctx, spec.Namespace, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	level := ns.Labels[LabelPodSecurityEnforce]
	var why string
	switch {
	case level == "restricted":
		why = "runs as root"
		if len(spec.Capabilities) > 0 {
			why += fmt.Sprintf(" with the capabilities %v", spec.Capabilities)
		}
	case level == "baseline" && slices.ContainsFunc(spec.Capabilities, func(c corev1.Capability) bool { return !slices.Contains(baselineCapabilities, c) }):
		why = fmt.Sprintf("adds the capabilities %v", spec.Capabilities)
	default:
		return nil
	}
	return &Refusal{Reason: platformv1.ReasonPodSecurityRefused, Message: fmt.Sprintf(
		"namespace %s enforces Pod Security %q (label %s), which refuses the agent's default pod: it %s to read and write every file whatever its owner. "+
			"Set agentSecurityContext (runAsUser, and runAsGroup) to run the agent as the user that owns the files, with no capabilities; see docs/live-applications.md",
		spec.Namespace, level, LabelPodSecurityEnforce, why)}
}
