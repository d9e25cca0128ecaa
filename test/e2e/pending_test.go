//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// missingAgentImage is an image no node has and none can pull: the local node reaches no
// registry, and the .invalid domain never resolves.
const missingAgentImage = "registry.invalid/backup-operator:missing"

// setAgentImage runs the operator with --agent-image image (none: its own image again) and
// waits for every replica to run it.
func setAgentImage(t *testing.T, e *Env, image string) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := controllerDeployment(t, e)
		c := &d.Spec.Template.Spec.Containers[0]
		args := c.Args[:0:0]
		for _, a := range c.Args {
			if !strings.HasPrefix(a, "--agent-image=") {
				args = append(args, a)
			}
		}
		if image != "" {
			args = append(args, "--agent-image="+image)
		}
		c.Args = args
		_, err := e.Kube.AppsV1().Deployments(operatorNamespace).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("setting the agent image of the operator to %q: %v", image, err)
	}
	waitControllerReady(t, e)
}

// TestABackupWhosePodCannotPullItsImageSaysSoAndFails runs the operator with an agent image that
// does not exist: the Backup says at once that its pod cannot start, and why, and fails with
// PodNotStarted at its pendingDeadlineSeconds, its Job gone.
func TestABackupWhosePodCannotPullItsImageSaysSoAndFails(t *testing.T) {
	e := requireEnv(t)
	c := platformClient(t, e)
	ctx := testContext(t)
	ns := e.Namespace(t)
	e.HostPathPVC(t, ns, "data", "64Mi")
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "64Mi")
	setAgentImage(t, e, missingAgentImage)
	t.Cleanup(func() { setAgentImage(t, e, "") })

	b := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "no-image"}, Spec: platformv1.BackupSpec{PVCName: "data"}}
	b.Spec.PendingDeadlineSeconds = ptr.To[int64](30)
	if _, err := c.PlatformV1().Backups(ns).Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, time.Second, "the Backup to say its pod cannot pull its image", func() (bool, error) {
		got, err := c.PlatformV1().Backups(ns).Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionSucceeded)
		if got.Status.Phase.Final() {
			return true, nil // the deadline came first: checked below
		}
		return cond != nil && strings.Contains(cond.Message, "cannot start") && strings.Contains(cond.Message, "check the agent image"), fmt.Errorf("condition %+v", cond)
	})
	got := waitBackup(t, c, ns, b.Name, platformv1.BackupFailed)
	cond := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionSucceeded)
	if cond.Reason != platformv1.ReasonPodNotStarted || !strings.Contains(cond.Message, missingAgentImage) {
		t.Fatalf("condition %+v, want %s naming the image", cond, platformv1.ReasonPodNotStarted)
	}
	events, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=no-image,reason=PodNotStarting"})
	if err != nil || len(events.Items) != 1 || events.Items[0].Type != corev1.EventTypeWarning {
		t.Fatalf("PodNotStarting events %+v (%v), want one Warning", events, err)
	}
	Eventually(t, time.Minute, time.Second, "the Job of the Backup to be gone", func() (bool, error) {
		jobs, err := e.Kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: platformv1.LabelBackup + "=no-image"})
		if err != nil {
			return false, err
		}
		return len(jobs.Items) == 0, fmt.Errorf("%d Jobs", len(jobs.Items))
	})
}
