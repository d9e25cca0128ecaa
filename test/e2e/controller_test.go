//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// controllerDeployment returns the operator's Deployment, failing the test with
// what to do when it has not been deployed.
func controllerDeployment(t *testing.T, e *Env) *appsv1.Deployment {
	t.Helper()
	d, err := e.Kube.AppsV1().Deployments(operatorNamespace).Get(testContext(t), controllerName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		t.Fatalf("deployment %s/%s not found: deploy the operator first (make deploy)", operatorNamespace, controllerName)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestControllerBecomesReady(t *testing.T) {
	e := requireEnv(t)
	ctx := testContext(t)
	d := controllerDeployment(t, e)
	if sa := d.Spec.Template.Spec.ServiceAccountName; sa != controllerAccount {
		t.Errorf("the controller runs as ServiceAccount %q, want %q", sa, controllerAccount)
	}
	pods := waitControllerReady(t, e)
	for _, p := range pods {
		if p.Spec.ServiceAccountName != controllerAccount {
			t.Errorf("pod %s runs as %q", p.Name, p.Spec.ServiceAccountName)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount > 0 {
				t.Errorf("pod %s container %s restarted %d times", p.Name, cs.Name, cs.RestartCount)
			}
		}
		// It works with its own RBAC: the API server refused it nothing (other
		// Forbidden errors, such as a namespace being terminated, are not RBAC).
		logs, err := e.Kube.CoreV1().Pods(operatorNamespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			t.Errorf("logs of %s: %v", p.Name, err)
			continue
		}
		for _, line := range strings.Split(string(logs), "\n") {
			if rbacRefusal.MatchString(line) {
				t.Errorf("pod %s logged a refused request: %s", p.Name, line)
			}
		}
	}

	// Exactly one replica leads, and each says which it is on /metrics.
	leader := leaderPod(t, e)
	for _, p := range pods {
		want := "0"
		if p.Name == leader {
			want = "1"
		}
		metrics := scrape(t, p)
		if line := `leader_election_master_status{name="backup-operator"} ` + want; !strings.Contains(metrics, line) {
			t.Errorf("pod %s (leader %s) does not report %q on /metrics", p.Name, leader, line)
		}
	}
	checkNoBroadBindings(t, e)
}

// waitControllerReady waits until the Deployment has all its replicas up to date and ready, and
// returns their pods.
func waitControllerReady(t *testing.T, e *Env) []corev1.Pod {
	t.Helper()
	ctx := testContext(t)
	var pods []corev1.Pod
	Eventually(t, 3*time.Minute, time.Second, "the controller's Deployment to be Available with every replica up to date and ready", func() (bool, error) {
		d, err := e.Kube.AppsV1().Deployments(operatorNamespace).Get(ctx, controllerName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != want ||
			d.Status.ReadyReplicas != want || d.Status.Replicas != want {
			return false, fmt.Errorf("generation %d observed %d, replicas %d updated %d ready %d (want %d)",
				d.Generation, d.Status.ObservedGeneration, d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, want)
		}
		available := false
		for _, c := range d.Status.Conditions {
			available = available || c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue
		}
		if !available {
			return false, fmt.Errorf("not Available yet")
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			return false, err
		}
		list, err := e.Kube.CoreV1().Pods(operatorNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				return false, fmt.Errorf("pod %s is terminating", p.Name)
			}
			for _, cs := range p.Status.ContainerStatuses {
				if !cs.Ready {
					return false, fmt.Errorf("pod %s container %s is not ready", p.Name, cs.Name)
				}
			}
			pods = append(pods, p)
		}
		return int32(len(pods)) == want, fmt.Errorf("%d pods, want %d", len(pods), want)
	})
	return pods
}

// rbacRefusal matches the API server's message for a request RBAC denied.
var rbacRefusal = regexp.MustCompile(`forbidden: User "[^"]*" cannot [a-z]+ resource`)

// checkNoBroadBindings fails if the controller's ServiceAccount is bound to one
// of the built-in broad roles.
func checkNoBroadBindings(t *testing.T, e *Env) {
	t.Helper()
	ctx := testContext(t)
	broad := map[string]bool{"cluster-admin": true, "admin": true, "edit": true, "system:controller:generic-garbage-collector": true}
	isController := func(s []rbacv1.Subject) bool {
		for _, x := range s {
			if x.Kind == "ServiceAccount" && x.Name == controllerAccount && x.Namespace == operatorNamespace {
				return true
			}
			if x.Kind == "Group" && (x.Name == "system:serviceaccounts" || x.Name == "system:serviceaccounts:"+operatorNamespace || x.Name == "system:authenticated") {
				return true
			}
		}
		return false
	}
	crbs, err := e.Kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range crbs.Items {
		if broad[b.RoleRef.Name] && isController(b.Subjects) {
			t.Errorf("ClusterRoleBinding %s gives the controller %s", b.Name, b.RoleRef.Name)
		}
	}
	rbs, err := e.Kube.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range rbs.Items {
		if broad[b.RoleRef.Name] && isController(b.Subjects) {
			t.Errorf("RoleBinding %s/%s gives the controller %s", b.Namespace, b.Name, b.RoleRef.Name)
		}
	}
}

func TestControllerServiceAccountIsLeastPrivileged(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	controllerDeployment(t, e)
	ctx := testContext(t)

	canI := func(args ...string) (bool, string) {
		out, err := e.kubectl(ctx, nil, append([]string{"auth", "can-i", "--as=" + controllerAccountUser}, args...)...)
		answer := strings.TrimSpace(out)
		if err != nil && answer != "no" {
			t.Fatalf("kubectl auth can-i %s: %v", strings.Join(args, " "), err)
		}
		return answer == "yes", answer
	}
	// What it needs.
	for _, args := range [][]string{
		{"list", "backuppolicies." + group, "--all-namespaces"},
		{"watch", "backups." + group, "--all-namespaces"},
		{"create", "backups." + group, "-n", "default"},
		{"update", "backups." + group, "--subresource=status", "-n", "default"},
		{"update", "restores." + group, "--subresource=status", "-n", "default"},
		{"watch", "backupstorages." + group, "--all-namespaces"},
		{"update", "backupstorages." + group, "--subresource=status", "-n", "default"},
		{"watch", "restoredrills." + group, "--all-namespaces"},
		{"update", "restoredrills." + group, "--subresource=status", "-n", "default"},
		{"create", "restores." + group, "-n", "default"},
		{"delete", "restores." + group, "-n", "default"},
		{"create", "jobs.batch", "-n", "default"},
		{"list", "persistentvolumeclaims", "--all-namespaces"},
		{"delete", "persistentvolumeclaims", "-n", "default"},
		{"get", "persistentvolumes"},
		{"watch", "volumesnapshots.snapshot.storage.k8s.io", "--all-namespaces"},
		{"create", "volumesnapshots.snapshot.storage.k8s.io", "-n", "default"},
		{"delete", "volumesnapshots.snapshot.storage.k8s.io", "-n", "default"},
		{"list", "volumesnapshotclasses.snapshot.storage.k8s.io"},
		{"get", "leases.coordination.k8s.io/backup-operator", "-n", operatorNamespace},
		{"update", "leases.coordination.k8s.io/backup-operator", "-n", operatorNamespace},
	} {
		if ok, answer := canI(args...); !ok {
			t.Errorf("kubectl auth can-i %s --as=%s: %s, want yes", strings.Join(args, " "), controllerAccountUser, answer)
		}
	}
	// Events, through either API.
	if ok1, _ := canI("create", "events", "-n", "default"); !ok1 {
		if ok2, _ := canI("create", "events.events.k8s.io", "-n", "default"); !ok2 {
			t.Errorf("the controller cannot create Events")
		}
	}
	// What it must not do.
	for _, args := range [][]string{
		{"get", "secrets", "-n", "default"},
		{"list", "secrets", "--all-namespaces"},
		{"get", "secrets", "-n", operatorNamespace},
		{"create", "clusterrolebindings"},
		{"create", "rolebindings", "-n", "default"},
		{"escalate", "clusterroles"},
		{"impersonate", "serviceaccounts", "-n", "default"},
		{"create", "pods/exec", "-n", "default"},
		{"delete", "nodes"},
		{"delete", "persistentvolumes"},
		{"list", "persistentvolumes"},
		{"create", "volumesnapshotcontents.snapshot.storage.k8s.io"},
		{"delete", "volumesnapshotcontents.snapshot.storage.k8s.io"},
		{"create", "volumesnapshotclasses.snapshot.storage.k8s.io"},
		// A drill's spec is the user's: the controller only writes its status.
		{"update", "restoredrills." + group, "-n", "default"},
		{"create", "restoredrills." + group, "-n", "default"},
		{"delete", "customresourcedefinitions.apiextensions.k8s.io"},
		// Only its own Lease, and only in its own namespace.
		{"update", "leases.coordination.k8s.io/kube-scheduler", "-n", operatorNamespace},
		{"update", "leases.coordination.k8s.io/backup-operator", "-n", "kube-system"},
	} {
		if ok, answer := canI(args...); ok {
			t.Errorf("kubectl auth can-i %s --as=%s: %s, want no", strings.Join(args, " "), controllerAccountUser, answer)
		}
	}

	// A real request as the ServiceAccount is refused by the API server.
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: controllerAccountUser,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace, "system:authenticated"},
	}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = as.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets as %s: got %v, want Forbidden", controllerAccountUser, err)
	}
	if !strings.Contains(err.Error(), `cannot list resource "secrets"`) {
		t.Errorf("unexpected Forbidden message: %v", err)
	}
	t.Logf("refused as expected: %v", err)
	// ... and what it needs works under the same identity.
	if _, err := as.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{LabelSelector: labels.Everything().String()}); err != nil {
		t.Errorf("listing PVCs as %s: %v", controllerAccountUser, err)
	}
}
