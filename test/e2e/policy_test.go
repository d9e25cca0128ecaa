//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
)

// An every-minute policy with keepLast: 2, run by the deployed operator on the real node:
// each run's Backup is created on time, completes, and retention prunes the history to the
// newest two.
func TestPolicyRunsOnTimeAndPrunesToKeepLast(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	ctx := testContext(t)
	client, err := versioned.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := e.Namespace(t)
	dir := e.HostPathPVC(t, ns, "data", "1Gi")
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from the policy test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.HostPathPVC(t, ns, platformv1.DefaultStorageClaimName, "1Gi")
	if _, err := e.Kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "data", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"app":"policy-e2e"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	keep := int32(2)
	policy := &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "every-minute"},
		Spec: platformv1.BackupPolicySpec{
			Schedule:  "* * * * *",
			Retention: &platformv1.RetentionPolicy{KeepLast: &keep},
			Target:    platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "policy-e2e"}}},
		},
	}
	if _, err := client.PlatformV1().BackupPolicies(ns).Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Every Backup seen, with the runs' scheduled times; pruned ones vanish from later lists.
	seen := map[string]time.Time{}
	Eventually(t, 6*time.Minute, 2*time.Second, "three runs, pruned to the newest two Completed Backups", func() (bool, error) {
		list, err := client.PlatformV1().Backups(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var completed []platformv1.Backup
		for _, b := range list.Items {
			scheduled, err := time.Parse(time.RFC3339, b.Annotations[platformv1.AnnotationScheduledTime])
			if err != nil {
				t.Fatalf("Backup %s has no scheduled time: %v", b.Name, err)
			}
			if _, ok := seen[b.Name]; !ok {
				// creationTimestamp has whole seconds; the run is due at second zero.
				if late := b.CreationTimestamp.Sub(scheduled); late < 0 || late > 5*time.Second {
					t.Errorf("Backup %s was created %s after its scheduled time %s", b.Name, late, scheduled.Format(time.RFC3339))
				}
				seen[b.Name] = scheduled
			}
			if b.Status.Phase == platformv1.BackupFailed {
				t.Fatalf("Backup %s failed: %+v", b.Name, b.Status.Conditions)
			}
			if b.Status.Phase == platformv1.BackupCompleted {
				completed = append(completed, b)
			}
		}
		if len(seen) < 3 || len(completed) != 2 || len(list.Items) != 2 {
			return false, fmt.Errorf("%d Backups seen, %d listed, %d Completed", len(seen), len(list.Items), len(completed))
		}
		return true, nil
	})

	// The two kept are the two newest runs.
	var times []time.Time
	for _, at := range seen {
		times = append(times, at)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].After(times[j]) })
	list, err := client.PlatformV1().Backups(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range list.Items {
		if at := seen[b.Name]; !at.Equal(times[0]) && !at.Equal(times[1]) {
			t.Errorf("retention kept %s (scheduled %s), not one of the two newest runs", b.Name, at.Format(time.RFC3339))
		}
	}
	p, err := client.PlatformV1().BackupPolicies(ns).Get(ctx, policy.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.LastSuccessfulTime == nil || p.Status.NextScheduleTime == nil {
		t.Errorf("policy status lacks lastSuccessfulTime or nextScheduleTime: %+v", p.Status)
	}
}
