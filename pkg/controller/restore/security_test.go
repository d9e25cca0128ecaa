package restore

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/controller/agentjob/agentjobtest"
)

// A Restore with agentSecurityContext runs its agent as that user with nothing Pod Security
// "restricted" refuses; without it, as root with exactly the capabilities that give files back
// their owners and modes.
func TestRestoreAgentSecurityContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		as   *platformv1.AgentSecurityContext
		uid  int64
		caps []corev1.Capability
	}{
		{"default", nil, 0, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}},
		{"unprivileged", &platformv1.AgentSecurityContext{RunAsUser: 999, RunAsGroup: ptr.To[int64](998), FSGroup: ptr.To[int64](997)}, 999, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := newRestore()
			r.Spec.AgentSecurityContext = tc.as
			f.Restores, f.Backups, f.Claims = []*platformv1.Restore{r}, []*platformv1.Backup{completedBackup()}, defaultClaims()
			f.MustRun()
			pod := f.CreatedJob().Spec.Template.Spec
			psc, sc := pod.SecurityContext, pod.Containers[0].SecurityContext
			if ptr.Deref(psc.RunAsUser, -1) != tc.uid || ptr.Deref(psc.RunAsNonRoot, false) != (tc.as != nil) || ptr.Deref(sc.RunAsNonRoot, false) != (tc.as != nil) {
				t.Fatalf("pod security context %+v, container %+v: want uid %d", psc, sc, tc.uid)
			}
			if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, tc.caps) || ptr.Deref(sc.AllowPrivilegeEscalation, true) {
				t.Fatalf("capabilities %+v, escalation %v: want drop ALL, add %v, no escalation", sc.Capabilities, sc.AllowPrivilegeEscalation, tc.caps)
			}
			if tc.as != nil && (ptr.Deref(psc.RunAsGroup, -1) != 998 || ptr.Deref(psc.FSGroup, -1) != 997) {
				t.Fatalf("pod security context %+v: want group 998 and fsGroup 997", psc)
			}
			if tc.as == nil && psc.FSGroup != nil {
				t.Fatalf("fsGroup %d by default: the kubelet would rewrite the group of every file", *psc.FSGroup)
			}
		})
	}
}

// In a namespace that enforces Pod Security "restricted", a Restore without agentSecurityContext
// fails before it makes anything, and says what to set.
func TestRestoreInARestrictedNamespaceNeedsAgentSecurityContext(t *testing.T) {
	f := newFixture(t)
	f.Restores, f.Backups, f.Claims = []*platformv1.Restore{newRestore()}, []*platformv1.Backup{completedBackup()}, defaultClaims()
	f.APIOnly = []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: map[string]string{agentjob.LabelPodSecurityEnforce: "restricted"}}}}
	f.MustRun()
	f.ExpectActions("update restores/status recover")
	agentjobtest.ExpectCondition(t, f.status().Status.Conditions, metav1.ConditionFalse, platformv1.ReasonPodSecurityRefused, "agentSecurityContext", "nothing was written")
}
