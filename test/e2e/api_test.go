//go:build e2e

package e2e

import (
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
)

// seedPolicy is the BackupPolicy example of the seed's design, verbatim: it
// must apply as written.
const seedPolicy = `apiVersion: platform.example.com/v1
kind: BackupPolicy
metadata: {name: daily-backups}
spec:
  schedule: "0 2 * * *"
  retention: {keepLast: 3}
  target:
    pvcSelector: {matchLabels: {app: postgres}}
`

func TestCRDsAreEstablished(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	ctx := testContext(t)
	want := map[string]string{
		"backuppolicies." + group: "BackupPolicy",
		"backups." + group:        "Backup",
		"restores." + group:       "Restore",
		"backupstorages." + group: "BackupStorage",
		"restoredrills." + group:  "RestoreDrill",
	}
	for name, kind := range want {
		crd, err := e.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("CRD %s: %v", name, err)
			continue
		}
		if got, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind"); got != kind {
			t.Errorf("CRD %s: kind %q, want %q", name, got, kind)
		}
		if got, _, _ := unstructured.NestedString(crd.Object, "spec", "scope"); got != "Namespaced" {
			t.Errorf("CRD %s: scope %q, want Namespaced", name, got)
		}
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		served := false
		for _, v := range versions {
			m, _ := v.(map[string]any)
			if m["name"] == version && m["served"] == true && m["storage"] == true {
				served = true
			}
		}
		if !served {
			t.Errorf("CRD %s: version %s is not served and stored", name, version)
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		status := map[string]any{}
		for _, c := range conds {
			m, _ := c.(map[string]any)
			status[m["type"].(string)] = m["status"]
		}
		for _, c := range []string{"Established", "NamesAccepted"} {
			if status[c] != "True" {
				t.Errorf("CRD %s: condition %s is %v, want True", name, c, status[c])
			}
		}
	}
	out := e.Kubectl(t, nil, "api-resources", "--api-group="+group, "-o", "name")
	for _, r := range []string{"backuppolicies." + group, "backups." + group, "restores." + group} {
		if !slices.Contains(strings.Fields(out), r) {
			t.Errorf("kubectl api-resources --api-group=%s does not list %s:\n%s", group, r, out)
		}
	}
}

func TestSeedPolicyExampleApplies(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	ns := e.Namespace(t)
	out := e.Kubectl(t, []byte(seedPolicy), "apply", "-n", ns, "-f", "-")
	if !strings.Contains(out, "backuppolicy.platform.example.com/daily-backups created") {
		t.Errorf("kubectl apply said %q", out)
	}
	got, err := e.Dynamic.Resource(policiesGVR).Namespace(ns).Get(testContext(t), "daily-backups", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, _, _ := unstructured.NestedString(got.Object, "spec", "schedule"); s != "0 2 * * *" {
		t.Errorf("spec.schedule = %q", s)
	}
	if n, _, _ := unstructured.NestedInt64(got.Object, "spec", "retention", "keepLast"); n != 3 {
		t.Errorf("spec.retention.keepLast = %d", n)
	}
	// The API server fills in the documented default.
	if p, _, _ := unstructured.NestedString(got.Object, "spec", "concurrencyPolicy"); p != "Forbid" {
		t.Errorf("spec.concurrencyPolicy = %q, want the default Forbid", p)
	}
	// Applying it again is a no-op.
	out = e.Kubectl(t, []byte(seedPolicy), "apply", "-n", ns, "-f", "-")
	if !strings.Contains(out, "unchanged") {
		t.Errorf("second kubectl apply said %q, want unchanged", out)
	}
}

// TestInvalidObjectsAreRejected checks that the API server itself (the CRDs'
// schemas and validation rules) refuses bad objects with a message that names
// the field.
func TestInvalidObjectsAreRejected(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	ns := e.Namespace(t)
	cases := []struct {
		name     string
		manifest string
		// every string must appear in the error message
		want []string
	}{
		{
			name: "keepLast zero",
			manifest: `apiVersion: platform.example.com/v1
kind: BackupPolicy
metadata: {name: keep-zero}
spec:
  schedule: "0 2 * * *"
  retention: {keepLast: 0}
  target: {pvcSelector: {matchLabels: {app: postgres}}}`,
			want: []string{"spec.retention.keepLast", "greater than or equal to 1"},
		},
		{
			name: "unknown concurrencyPolicy",
			manifest: `apiVersion: platform.example.com/v1
kind: BackupPolicy
metadata: {name: bad-concurrency}
spec:
  schedule: "0 2 * * *"
  concurrencyPolicy: Sometimes
  retention: {keepLast: 3}
  target: {pvcSelector: {matchLabels: {app: postgres}}}`,
			want: []string{"spec.concurrencyPolicy", "Unsupported value", `"Sometimes"`, "Forbid"},
		},
		{
			name: "missing schedule",
			manifest: `apiVersion: platform.example.com/v1
kind: BackupPolicy
metadata: {name: no-schedule}
spec:
  retention: {keepLast: 3}
  target: {pvcSelector: {matchLabels: {app: postgres}}}`,
			want: []string{"spec.schedule", "Required value"},
		},
		{
			name: "time zone prefix in schedule",
			manifest: `apiVersion: platform.example.com/v1
kind: BackupPolicy
metadata: {name: tz-prefix}
spec:
  schedule: "CRON_TZ=UTC 0 2 * * *"
  retention: {keepLast: 3}
  target: {pvcSelector: {matchLabels: {app: postgres}}}`,
			want: []string{"spec", "timeZone"},
		},
		{
			name: "backup without pvcName",
			manifest: `apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: no-pvc}
spec: {}`,
			want: []string{"spec.pvcName", "Required value"},
		},
		{
			name: "snapshot class on a direct backup",
			manifest: `apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: direct-with-class}
spec:
  pvcName: data
  source: {volumeSnapshotClassName: fast}`,
			want: []string{"spec.source", "volumeSnapshotClassName and keepSnapshot apply only to copyMethod Snapshot"},
		},
		{
			name: "unknown copyMethod",
			manifest: `apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: clone}
spec:
  pvcName: data
  source: {copyMethod: Clone}`,
			want: []string{"spec.source.copyMethod", "Unsupported value", `"Clone"`},
		},
		{
			name: "a source command without a ServiceAccount to exec as",
			manifest: `apiVersion: platform.example.com/v1
kind: BackupPolicy
metadata: {name: no-exec-sa}
spec:
  schedule: "0 2 * * *"
  target: {pvcSelector: {matchLabels: {app: postgres}}}
  source:
    command: {container: postgres, command: [pg_dump, -Fc], format: file}`,
			want: []string{"spec", "source.command and hooks run as the ServiceAccount named in execServiceAccountName"},
		},
		{
			name: "a source command from a snapshot",
			manifest: `apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: command-snapshot}
spec:
  pvcName: data
  execServiceAccountName: backup-exec
  source:
    copyMethod: Snapshot
    command: {container: postgres, command: [pg_basebackup, -Ft, -D, "-"], format: tar}`,
			want: []string{"spec.source", "cannot be combined with copyMethod Snapshot"},
		},
		{
			name: "hooks around a snapshot",
			manifest: `apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: hooks-snapshot}
spec:
  pvcName: data
  execServiceAccountName: backup-exec
  source: {copyMethod: Snapshot}
  hooks: {pre: [{container: app, command: [sync]}]}`,
			want: []string{"spec", "hooks run around a Direct read"},
		},
		{
			name: "a fileName for a tar stream",
			manifest: `apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: tar-file-name}
spec:
  pvcName: data
  execServiceAccountName: backup-exec
  source:
    command: {container: postgres, command: [pg_basebackup, -Ft, -D, "-"], format: tar, fileName: base.tar}`,
			want: []string{"spec.source.command", "fileName applies only to format file"},
		},
		{
			name: "an agent running as root",
			manifest: `apiVersion: platform.example.com/v1
kind: Restore
metadata: {name: as-root}
spec:
  backupName: nightly
  target: {claimName: data}
  agentSecurityContext: {runAsUser: 0}`,
			want: []string{"spec.agentSecurityContext.runAsUser", "greater than or equal to 1"},
		},
		{
			name: "restore without backupName",
			manifest: `apiVersion: platform.example.com/v1
kind: Restore
metadata: {name: no-backup}
spec:
  target: {claimName: restored}`,
			want: []string{"spec.backupName", "Required value"},
		},
	}
	gvrs := map[string]schema.GroupVersionResource{"BackupPolicy": policiesGVR, "Backup": backupsGVR, "Restore": restoresGVR}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := Object(t, tc.manifest)
			_, err := e.Create(testContext(t), gvrs[obj.GetKind()], ns, obj)
			checkRejected(t, err, tc.want)
		})
	}

	t.Run("backup spec is immutable", func(t *testing.T) {
		obj := Object(t, `apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: immutable}
spec: {pvcName: data}`)
		if _, err := e.Create(testContext(t), backupsGVR, ns, obj); err != nil {
			t.Fatal(err)
		}
		// The controller may update the Backup meanwhile: retry on conflicts.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			current, err := e.Dynamic.Resource(backupsGVR).Namespace(ns).Get(testContext(t), "immutable", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if err := unstructured.SetNestedField(current.Object, "other", "spec", "pvcName"); err != nil {
				return err
			}
			_, err = e.Dynamic.Resource(backupsGVR).Namespace(ns).Update(testContext(t), current, metav1.UpdateOptions{})
			return err
		})
		checkRejected(t, err, []string{"spec", "cannot change after creation"})
	})
}

func checkRejected(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the API server accepted the object; want an error mentioning %q", want)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("got %v (reason %s), want an Invalid error", err, apierrors.ReasonForError(err))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not mention %q:\n%v", w, err)
		}
	}
	t.Logf("rejected as expected: %v", err)
}
