//go:build e2e

package e2e

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// columns splits the header line of `kubectl get` output into column names
// (they are separated by two or more spaces; a name may contain one space).
func columns(out string) []string {
	header, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(header), -1)
}

func TestPrinterColumns(t *testing.T) {
	t.Parallel()
	e := requireEnv(t)
	ns := e.Namespace(t)
	e.Kubectl(t, []byte(seedPolicy), "apply", "-n", ns, "-f", "-")
	e.Kubectl(t, []byte(`apiVersion: platform.example.com/v1
kind: Backup
metadata: {name: printed}
spec: {pvcName: data}
---
apiVersion: platform.example.com/v1
kind: Restore
metadata: {name: printed}
spec:
  backupName: printed
  target: {claimName: restored}
---
apiVersion: platform.example.com/v1
kind: BackupStorage
metadata: {name: printed}
spec:
  s3: {endpoint: "https://s3.example.test", bucket: printed-bucket}
`), "apply", "-n", ns, "-f", "-")

	cases := []struct {
		resource string
		args     []string
		want     []string
		row      []string // values expected in the object's row
	}{
		{
			resource: "backuppolicies",
			want:     []string{"NAME", "SCHEDULE", "SUSPEND", "LAST SCHEDULE", "NEXT SCHEDULE", "LAST SUCCESS", "AGE"},
			row:      []string{"daily-backups", "0 2 * * *"},
		},
		{
			resource: "backups",
			want:     []string{"NAME", "PVC", "POLICY", "PHASE", "SIZE", "DURATION", "AGE"},
			row:      []string{"printed", "data"},
		},
		{
			resource: "backups",
			args:     []string{"-o", "wide"},
			want:     []string{"NAME", "PVC", "PHASE", "AGE", "SHA256", "METHOD", "SOURCE", "JOB"},
		},
		{
			resource: "restores",
			want:     []string{"NAME", "BACKUP", "TARGET PVC", "PHASE", "AGE"},
			row:      []string{"printed", "restored"},
		},
		{
			resource: "restores",
			args:     []string{"-o", "wide"},
			want:     []string{"NAME", "BACKUP", "TARGET PVC", "PHASE", "AGE", "DURATION", "JOB"},
		},
		{
			resource: "backupstorages",
			want:     []string{"NAME", "BACKEND", "LOCATION", "ACCESS", "PHASE", "LAST VALIDATED", "AGE"},
			row:      []string{"printed", "ReadWrite"},
		},
		{
			resource: "backupstorages",
			args:     []string{"-o", "wide"},
			want:     []string{"NAME", "BACKEND", "LOCATION", "PHASE", "ARCHIVES", "LAST IMPORT"},
		},
	}
	for _, tc := range cases {
		t.Run(strings.Join(append([]string{tc.resource}, tc.args...), " "), func(t *testing.T) {
			out := e.Kubectl(t, nil, append([]string{"get", tc.resource + "." + group, "-n", ns}, tc.args...)...)
			t.Logf("kubectl get %s:\n%s", tc.resource, out)
			got := columns(out)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("header %q lacks column %q", got, w)
				}
			}
			for _, v := range tc.row {
				if !strings.Contains(out, v) {
					t.Errorf("output lacks %q", v)
				}
			}
		})
	}
}
