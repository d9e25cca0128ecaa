package agentjob

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

func TestPodSecurityRefusal(t *testing.T) {
	unprivileged := &platformv1.AgentSecurityContext{RunAsUser: 1000}
	for _, tc := range []struct {
		name  string
		level string
		caps  []corev1.Capability
		as    *platformv1.AgentSecurityContext
		says  string // "" when admitted
	}{
		{"privileged admits a backup", "privileged", ReadCapabilities, nil, ""},
		{"no label admits a backup", "", ReadCapabilities, nil, ""},
		{"baseline refuses DAC_READ_SEARCH", "baseline", ReadCapabilities, nil, "adds the capabilities [DAC_READ_SEARCH]"},
		{"baseline admits a restore's capabilities", "baseline", WriteCapabilities, nil, ""},
		{"restricted refuses root", "restricted", WriteCapabilities, nil, "runs as root with the capabilities"},
		{"restricted refuses root without capabilities", "restricted", nil, nil, "runs as root to read"},
		{"restricted admits agentSecurityContext", "restricted", ReadCapabilities, unprivileged, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "db"}}
			if tc.level != "" {
				ns.Labels = map[string]string{LabelPodSecurityEnforce: tc.level}
			}
			spec := Spec{Namespace: "db", Capabilities: tc.caps, Settings: platformv1.JobSettings{AgentSecurityContext: tc.as}}
			r := PodSecurityRefusal(context.Background(), fake.NewClientset(ns), spec)
			switch {
			case tc.says == "" && r != nil:
				t.Fatalf("refused: %+v", r)
			case tc.says != "" && (r == nil || r.Reason != platformv1.ReasonPodSecurityRefused || !strings.Contains(r.Message, tc.says) || !strings.Contains(r.Message, "agentSecurityContext")):
				t.Fatalf("refusal %+v, want PodSecurityRefused saying %q and agentSecurityContext", r, tc.says)
			}
		})
	}
	// A namespace that cannot be read is left to admission.
	if r := PodSecurityRefusal(context.Background(), fake.NewClientset(), Spec{Namespace: "gone"}); r != nil {
		t.Fatalf("refused without a namespace: %+v", r)
	}
}
