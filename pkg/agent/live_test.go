package agent

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/podexec"
)

// appPod is a running database pod that mounts the claim "data".
func appPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "postgres-0"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "postgres"}},
			Volumes: []corev1.Volume{{Name: "pgdata", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"},
			}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "postgres", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
}

// withExec makes the agent reach a fake API server, where the ServiceAccount may exec unless
// denied names a permission ("exec" or "get"), and run its commands with ex.
func withExec(t *testing.T, ex *podexec.Fake, denied string, objects ...runtime.Object) {
	t.Helper()
	client := fake.NewClientset(objects...)
	client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		attrs := r.Spec.ResourceAttributes
		r.Status.Allowed = !(denied == "exec" && attrs.Subresource == "exec" || denied == "get" && attrs.Verb == "get")
		return true, r, nil
	})
	old := newExecutor
	newExecutor = func() (kubernetes.Interface, podexec.Executor, error) { return client, ex, nil }
	t.Cleanup(func() { newExecutor = old })
}

func hooksJSON(t *testing.T, h platformv1.BackupHooks) string {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tarStream is a tar of files, as pg_basebackup -Ft -D - writes one: no root entry.
func tarStream(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	return buf.Bytes()
}

// writes is an executor on which program writes out to its standard output and exits 0, as
// the real one reports a write that failed; every other command does nothing and exits 0.
func writes(program string, out []byte) *podexec.Fake {
	return &podexec.Fake{Run: func(call podexec.Call, stdout io.Writer) (podexec.Result, error) {
		if call.Argv[0] == program {
			if _, err := stdout.Write(out); err != nil {
				return podexec.Result{ExitCode: -1}, fmt.Errorf("writing the standard output of %s: %w", program, err)
			}
		}
		return podexec.Result{}, nil
	}}
}

// hook is a hook in container postgres.
func hook(onError platformv1.HookOnError, argv ...string) platformv1.Hook {
	return platformv1.Hook{Container: "postgres", Command: argv, OnError: onError}
}

// fails answers like a command that exited with code.
func fails(call podexec.Call, code int, stderr string) (podexec.Result, error) {
	return podexec.Result{ExitCode: code, Stderr: stderr}, &podexec.CommandError{
		Namespace: call.Namespace, Pod: call.Pod, Container: call.Container, Argv: call.Argv, ExitCode: code, Stderr: stderr,
	}
}

// A volume backup with hooks: the pre hook's effect is in the archive, the post hook runs after
// the read, and the result records both.
func TestHooksAroundAVolumeBackup(t *testing.T) {
	src, store := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"PG_VERSION": "15\n"})
	ex := &podexec.Fake{Run: func(call podexec.Call, stdout io.Writer) (podexec.Result, error) {
		if call.Argv[0] == "checkpoint" {
			writeFiles(t, src, map[string]string{"checkpoint.marker": "done\n"})
			io.WriteString(stdout, "CHECKPOINT\n")
		}
		return podexec.Result{}, nil
	}}
	withExec(t, ex, "", appPod())
	out := filepath.Join(store, "b.tar.zst")
	var res BackupResult
	code, stderr := run(t, &res, "backup", "--source", src, "--output", out, "--namespace", "db", "--pvc", "data",
		"--exec-pod", "postgres-0", "--hooks", hooksJSON(t, platformv1.BackupHooks{
			Pre:  []platformv1.Hook{hook("", "checkpoint")},
			Post: []platformv1.Hook{hook("", "resume")},
		}))
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := callArgv(ex); !slices.Equal(got, []string{"checkpoint", "resume"}) {
		t.Errorf("ran %v, want the pre hook, then the post hook", got)
	}
	if len(res.Hooks) != 2 || res.Hooks[0].Phase != platformv1.HookPre || res.Hooks[0].Result != platformv1.HookSucceeded ||
		res.Hooks[0].ExitCode == nil || *res.Hooks[0].ExitCode != 0 || !strings.Contains(res.Hooks[0].OutputTail, "CHECKPOINT") ||
		res.Hooks[1].Phase != platformv1.HookPost || res.Source != nil {
		t.Errorf("result hooks %+v, source %+v", res.Hooks, res.Source)
	}
	dst := t.TempDir()
	var rr RestoreResult
	if code, stderr := run(t, &rr, "restore", "--archive", out, "--target", dst, "--sha256", res.SHA256); code != ExitOK {
		t.Fatalf("restore exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dst, "checkpoint.marker")); err != nil {
		t.Errorf("the pre hook's marker is not in the archive: %v", err)
	}
}

func callArgv(ex *podexec.Fake) []string {
	var got []string
	for _, c := range ex.Calls() {
		got = append(got, strings.Join(c.Argv, " "))
	}
	return got
}

// A command's tar output is the archive, and the result says which command it was.
func TestCommandStreamBackup(t *testing.T) {
	store := t.TempDir()
	stream := tarStream(t, map[string]string{"PG_VERSION": "15\n", "backup_label": "START WAL LOCATION: 0/2000028\n", "base/1/1259": "page"})
	ex := writes("pg_basebackup", stream)
	withExec(t, ex, "", appPod())
	cmd := `{"container":"postgres","command":["pg_basebackup","-Ft","-D","-","-X","fetch"],"format":"tar"}`
	out := filepath.Join(store, "b.tar.zst")
	var res BackupResult
	code, stderr := run(t, &res, "backup", "--output", out, "--namespace", "db", "--pvc", "data", "--exec-pod", "postgres-0", "--command", cmd,
		"--hooks", hooksJSON(t, platformv1.BackupHooks{Post: []platformv1.Hook{hook("", "true")}}))
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if res.Files != 3 || res.Source == nil || res.Source.Type != platformv1.SourceCommand || res.Source.Pod != "postgres-0" ||
		strings.Join(res.Source.Command, " ") != "pg_basebackup -Ft -D - -X fetch" || res.Source.Format != platformv1.StreamFormatTar {
		t.Errorf("result %+v, source %+v", res.BackupStats, res.Source)
	}
	if got := callArgv(ex); !slices.Equal(got, []string{"pg_basebackup -Ft -D - -X fetch", "true"}) {
		t.Errorf("ran %v", got)
	}
	dst := t.TempDir()
	var rr RestoreResult
	if code, stderr := run(t, &rr, "restore", "--archive", out, "--target", dst, "--sha256", res.SHA256); code != ExitOK {
		t.Fatalf("restore exit %d: %s", code, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "backup_label")); err != nil || !strings.HasPrefix(string(b), "START WAL") {
		t.Errorf("backup_label restored as %q (%v)", b, err)
	}
}

// Every way a live backup can fail leaves no archive; post hooks run whenever a pre hook ran.
func TestLiveBackupFailures(t *testing.T) {
	stream := tarStream(t, map[string]string{"PG_VERSION": "15\n"})
	cmd := `{"container":"postgres","command":["pg_basebackup","-Ft","-D","-"],"format":"tar"}`
	for _, tc := range []struct {
		name     string
		command  string
		hooks    platformv1.BackupHooks
		denied   string
		pod      *corev1.Pod
		run      func(call podexec.Call, stdout io.Writer) (podexec.Result, error)
		existing bool
		code     int
		reason   Reason
		says     []string
		ran      []string
	}{{
		name:  "a pre hook fails under Fail",
		hooks: platformv1.BackupHooks{Pre: []platformv1.Hook{hook(platformv1.HookFail, "freeze")}, Post: []platformv1.Hook{hook("", "thaw")}},
		run: func(call podexec.Call, _ io.Writer) (podexec.Result, error) {
			if call.Argv[0] == "freeze" {
				return fails(call, 3, "cannot freeze")
			}
			return podexec.Result{}, nil
		},
		code: ExitRefused, reason: HookFailed, says: []string{"pre hook 0 failed", "exited with code 3", "cannot freeze"},
		ran: []string{"freeze", "thaw"},
	}, {
		name:  "a post hook fails under Fail",
		hooks: platformv1.BackupHooks{Post: []platformv1.Hook{hook(platformv1.HookFail, "thaw")}},
		run: func(call podexec.Call, _ io.Writer) (podexec.Result, error) {
			return fails(call, 1, "thaw failed")
		},
		code: ExitRefused, reason: HookFailed, says: []string{"post hook 0 failed", "thaw failed"},
		ran: []string{"thaw"},
	}, {
		name: "the command exits non-zero after a complete tar", command: cmd,
		hooks: platformv1.BackupHooks{Pre: []platformv1.Hook{hook(platformv1.HookContinue, "false")}, Post: []platformv1.Hook{hook("", "true")}},
		run: func(call podexec.Call, stdout io.Writer) (podexec.Result, error) {
			switch call.Argv[0] {
			case "pg_basebackup":
				stdout.Write(stream)
				return fails(call, 1, "pg_basebackup: error: could not get write-ahead log end position")
			case "false":
				return fails(call, 1, "")
			}
			return podexec.Result{}, nil
		},
		code: ExitRefused, reason: CommandFailed, says: []string{"exited with code 1", "write-ahead log end position"},
		ran: []string{"false", "pg_basebackup -Ft -D -", "true"},
	}, {
		name: "the command writes no tar", command: cmd,
		run: func(call podexec.Call, stdout io.Writer) (podexec.Result, error) {
			io.WriteString(stdout, "PGDMP custom format")
			return podexec.Result{}, nil
		},
		code: ExitRefused, reason: StreamFailed, says: []string{"not a complete tar stream"},
		ran: []string{"pg_basebackup -Ft -D -"},
	}, {
		name: "the archive exists already", command: cmd, existing: true,
		run:  writes("pg_basebackup", stream).Run,
		code: ExitRefused, reason: OutputExists, says: []string{"already exists"},
		ran: nil, // the command never starts when the archive cannot be written
	}, {
		name: "no exec grant", command: cmd, denied: "exec",
		hooks: platformv1.BackupHooks{Pre: []platformv1.Hook{hook("", "freeze")}, Post: []platformv1.Hook{hook("", "thaw")}},
		code:  ExitRefused, reason: ExecForbidden, says: []string{`may not create pods/exec in namespace "db"`, `resources: ["pods/exec"], verbs: ["create"]`},
	}, {
		name: "the pod is not running", command: cmd,
		pod:  func() *corev1.Pod { p := appPod(); p.Status.Phase = corev1.PodPending; return p }(),
		code: ExitFailed, reason: PodNotRunning, says: []string{"pod db/postgres-0 is Pending"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			src, store := t.TempDir(), t.TempDir()
			writeFiles(t, src, map[string]string{"PG_VERSION": "15\n"})
			ex := &podexec.Fake{Run: tc.run}
			pod := tc.pod
			if pod == nil {
				pod = appPod()
			}
			withExec(t, ex, tc.denied, pod)
			if tc.existing {
				writeFiles(t, store, map[string]string{"b.tar.zst": "an older archive"})
			}
			args := []string{"backup", "--output", filepath.Join(store, "b.tar.zst"), "--namespace", "db", "--pvc", "data", "--exec-pod", "postgres-0",
				"--hooks", hooksJSON(t, tc.hooks)}
			if tc.command != "" {
				args = append(args, "--command", tc.command)
			} else {
				args = append(args, "--source", src)
			}
			var res BackupResult
			code, _ := run(t, &res, args...)
			if code != tc.code || res.Reason != tc.reason {
				t.Fatalf("exit %d reason %s (%s), want %d %s", code, res.Reason, res.Error, tc.code, tc.reason)
			}
			for _, s := range tc.says {
				if !strings.Contains(res.Error, s) {
					t.Errorf("error %q does not say %q", res.Error, s)
				}
			}
			if got := callArgv(ex); !slices.Equal(got, tc.ran) {
				t.Errorf("ran %q, want %q", got, tc.ran)
			}
			if names := listDirNames(t, store); len(names) != 0 && !(tc.existing && len(names) == 1) {
				t.Errorf("a failed backup left %v", names)
			}
		})
	}
}

func listDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
