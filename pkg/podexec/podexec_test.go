package podexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/remotecommand"
)

func TestCheckAccess(t *testing.T) {
	execRule := `{apiGroups: [""], resources: ["pods/exec"], verbs: ["create"]}`
	getRule := `{apiGroups: [""], resources: ["pods"], verbs: ["get"]}`
	for _, tc := range []struct {
		name        string
		allowed     []string // "verb resource/subresource" the reviews allow
		reviewErr   error
		wantMissing []string
		wantIn      []string
		wantNotIn   []string
	}{
		{name: "allowed", allowed: []string{"create pods/exec", "get pods/"}},
		{name: "exec denied", allowed: []string{"get pods/"}, wantMissing: []string{"create pods/exec"},
			wantIn: []string{`the agent's ServiceAccount may not create pods/exec in namespace "db": grant it a Role with the rule ` + execRule +
				" and bind it to the ServiceAccount named in the policy's execServiceAccountName; see manifests/examples/exec-rbac.yaml"},
			wantNotIn: []string{getRule, "get pods"}},
		{name: "get denied", allowed: []string{"create pods/exec"}, wantMissing: []string{"get pods"},
			wantIn: []string{`may not get pods in namespace "db"`, getRule}, wantNotIn: []string{execRule}},
		{name: "both denied", wantMissing: []string{"create pods/exec", "get pods"},
			wantIn: []string{"may not create pods/exec or get pods", "the rules " + execRule + " and " + getRule}},
		{name: "review fails", reviewErr: errors.New("connection refused"), wantIn: []string{"asking the API server", "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if tc.reviewErr != nil {
					return true, nil, tc.reviewErr
				}
				r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
				ra := r.Spec.ResourceAttributes
				if ra.Namespace != "db" || ra.Group != "" {
					t.Errorf("review of %+v, want namespace db in the core group", ra)
				}
				r.Status.Allowed = slices.Contains(tc.allowed, ra.Verb+" "+ra.Resource+"/"+ra.Subresource)
				return true, r, nil
			})
			err := CheckAccess(context.Background(), client, "db")
			if tc.wantIn == nil {
				if err != nil {
					t.Fatalf("CheckAccess: %v", err)
				}
				return
			}
			var fe *ForbiddenError
			if got := errors.As(err, &fe); got != (tc.wantMissing != nil) {
				t.Fatalf("CheckAccess = %v, ForbiddenError %v, want %v", err, got, tc.wantMissing != nil)
			}
			if fe != nil && !slices.Equal(fe.Missing, tc.wantMissing) {
				t.Errorf("Missing = %q, want %q", fe.Missing, tc.wantMissing)
			}
			checkMessage(t, err, tc.wantIn, tc.wantNotIn)
		})
	}
}

func checkMessage(t *testing.T, err error, in, notIn []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one saying %q", in)
	}
	for _, s := range in {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q\ndoes not contain %q", err, s)
		}
	}
	for _, s := range notIn {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q\ncontains %q", err, s)
		}
	}
}

func TestRunningContainer(t *testing.T) {
	running := func(mutate func(p *corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "postgres-0"},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "postgres"}, {Name: "exporter"}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-postgres-0"}}}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
				{Name: "exporter", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
				{Name: "postgres", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			}},
		}
		if mutate != nil {
			mutate(p)
		}
		return p
	}
	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		container  string
		claim      string
		wantReason string
		wantIn     string
	}{
		{name: "running", pod: running(nil), claim: "data-postgres-0"},
		{name: "no claim to check", pod: running(func(p *corev1.Pod) { p.Spec.Volumes = nil })},
		{name: "ephemeral volume", claim: "postgres-0-scratch", pod: running(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}}}
		})},
		{name: "not found", wantReason: PodNotFound, wantIn: "pod db/postgres-0 does not exist"},
		{name: "pending", pod: running(func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }), wantReason: PodNotRunning,
			wantIn: "pod db/postgres-0 is Pending, not Running: a command or hook runs only in a running pod that mounts the claim; start the application and back up again"},
		{name: "being deleted", pod: running(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: time.Now()} }),
			wantReason: PodNotRunning, wantIn: "is being deleted"},
		{name: "claim not mounted", pod: running(nil), claim: "other", wantReason: ClaimNotMounted, wantIn: `does not mount the claim "other"`},
		{name: "no such container", pod: running(nil), container: "pg", wantReason: ContainerNotFound,
			wantIn: `has no container "pg" (it has postgres, exporter)`},
		{name: "container waiting", pod: running(nil), container: "exporter", wantReason: ContainerNotRunning, wantIn: "waiting (CrashLoopBackOff)"},
		{name: "container terminated", pod: running(func(p *corev1.Pod) {
			p.Status.ContainerStatuses[1].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 3}}
		}), wantReason: ContainerNotRunning, wantIn: "has terminated (Error, exit code 3)"},
		{name: "container without status", pod: running(func(p *corev1.Pod) { p.Status.ContainerStatuses = nil }),
			wantReason: ContainerNotRunning, wantIn: "has not started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tc.pod != nil {
				client = fake.NewClientset(tc.pod)
			}
			if tc.container == "" {
				tc.container = "postgres"
			}
			err := RunningContainer(context.Background(), client, "db", "postgres-0", tc.container, tc.claim)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("RunningContainer: %v", err)
				}
				return
			}
			var pe *PodError
			if !errors.As(err, &pe) || pe.Reason != tc.wantReason {
				t.Fatalf("RunningContainer = %#v, want a PodError with Reason %s", err, tc.wantReason)
			}
			checkMessage(t, err, []string{tc.wantIn}, nil)
		})
	}

	t.Run("get forbidden", func(t *testing.T) {
		client := fake.NewClientset()
		client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "postgres-0", errors.New("RBAC: access denied"))
		})
		err := RunningContainer(context.Background(), client, "db", "postgres-0", "postgres", "")
		var fe *ForbiddenError
		if !errors.As(err, &fe) || !slices.Equal(fe.Missing, []string{"get pods"}) || !apierrors.IsForbidden(err) {
			t.Fatalf("RunningContainer = %v, want a ForbiddenError for get pods wrapping the 403", err)
		}
	})
}

func TestTailBuffer(t *testing.T) {
	var all []byte
	for i := 0; len(all) < 10000; i++ {
		all = append(all, strconv.Itoa(i)+" "...)
	}
	for _, tc := range []struct {
		name   string
		chunks []int // sizes of successive writes of all
	}{
		{"small writes", []int{1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000}},
		{"one large write", []int{10000}},
		{"large after small", []int{10, 5000, 4990}},
		{"exactly the size", []int{5904, 4096}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTail(4096)
			off := 0
			for _, n := range tc.chunks {
				if got, err := tb.Write(all[off : off+n]); got != n || err != nil {
					t.Fatalf("Write = %d, %v, want %d, nil", got, err, n)
				}
				off += n
			}
			want := "..." + strings.TrimSpace(string(all[off-4096:off]))
			if got := tb.String(); got != want {
				t.Errorf("String() = ...%q (%d bytes), want ...%q (%d bytes)", got[len(got)-20:], len(got), want[len(want)-20:], len(want))
			}
		})
	}
	t.Run("short output is whole and trimmed", func(t *testing.T) {
		tb := NewTail(4096)
		tb.Write([]byte("\nFATAL: "))
		tb.Write([]byte("password authentication failed\n"))
		if got, want := tb.String(), "FATAL: password authentication failed"; got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	})
	t.Run("split rune is dropped", func(t *testing.T) {
		tb := NewTail(4)
		tb.Write([]byte("xé€")) // é is 2 bytes, € 3: the tail starts inside é
		if got := tb.String(); got != "...€" {
			t.Errorf("String() = %q, want %q", got, "...€")
		}
	})
}

// apiServer imitates the parts of the API server that Exec talks to: access reviews, and the
// exec subresource, which it refuses with status, answers over SPDY with run, and, like an
// old server, declines to upgrade to WebSocket.
type apiServer struct {
	t       *testing.T
	allow   bool
	status  int
	run     func(stdout, stderr io.Writer, closed <-chan bool) (exitCode int)
	mu      sync.Mutex
	methods []string
	query   neturl.Values
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
		// client-go v0.34 sends built-in types as protobuf (and accepts a JSON answer).
		var review authorizationv1.SelfSubjectAccessReview
		body, _ := io.ReadAll(r.Body)
		if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, &review); err != nil {
			s.t.Errorf("decoding access review: %v", err)
		}
		review.Status.Allowed = s.allow
		writeJSON(w, http.StatusCreated, &review)
		return
	case "/api/v1/namespaces/db/pods/postgres-0/exec":
	default:
		s.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.methods = append(s.methods, r.Method)
	s.query = r.URL.Query()
	s.mu.Unlock()
	switch {
	case s.status != 0:
		writeJSON(w, s.status, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
			Reason: metav1.StatusReasonForbidden, Code: int32(s.status),
			Message: `pods "postgres-0" is forbidden: User "system:serviceaccount:db:agent" cannot create resource "pods/exec"`})
	case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		http.Error(w, "websocket not supported", http.StatusBadRequest)
	default:
		s.serveSPDY(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// serveSPDY is the kubelet's side of exec, protocol v4: stdout, stderr, then a status with
// the exit code on the error stream.
func (s *apiServer) serveSPDY(w http.ResponseWriter, r *http.Request) {
	if _, err := httpstream.Handshake(r, w, []string{remotecommandconsts.StreamProtocolV4Name}); err != nil {
		s.t.Errorf("handshake: %v", err)
		return
	}
	type created struct {
		stream    httpstream.Stream
		replySent <-chan struct{}
	}
	ch := make(chan created, 4)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		ch <- created{st, replySent}
		return nil
	})
	if conn == nil {
		s.t.Error("SPDY upgrade failed")
		return
	}
	defer conn.Close()
	streams := map[string]httpstream.Stream{}
	for len(streams) < 3 {
		select {
		case c := <-ch:
			<-c.replySent
			streams[c.stream.Headers().Get(corev1.StreamType)] = c.stream
		case <-time.After(10 * time.Second):
			s.t.Errorf("the client opened only %d streams", len(streams))
			return
		}
	}
	code := s.run(streams[corev1.StreamTypeStdout], streams[corev1.StreamTypeStderr], conn.CloseChan())
	if code < 0 {
		return
	}
	streams[corev1.StreamTypeStdout].Close()
	streams[corev1.StreamTypeStderr].Close()
	status := metav1.Status{Status: metav1.StatusSuccess}
	if code > 0 {
		status = metav1.Status{Status: metav1.StatusFailure, Reason: remotecommandconsts.NonZeroExitCodeReason,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: remotecommandconsts.ExitCodeCauseType, Message: strconv.Itoa(code)}}}}
	}
	json.NewEncoder(streams[corev1.StreamTypeError]).Encode(status)
	streams[corev1.StreamTypeError].Close()
	select {
	case <-conn.CloseChan():
	case <-time.After(10 * time.Second):
	}
}

type failingWriter struct{}

var errDiskFull = errors.New("no space left on device")

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestExec(t *testing.T) {
	argv := []string{"pg_basebackup", "-Ft", "-D", "-", "-X", "fetch"}
	waitForClose := func(stdout, _ io.Writer, closed <-chan bool) int {
		io.WriteString(stdout, "partial")
		<-closed
		return -1
	}
	for _, tc := range []struct {
		name        string
		server      *apiServer
		timeout     time.Duration
		stdout      io.Writer
		want        Result // Duration is not compared
		wantOut     string
		wantErr     string
		wantMethods []string
		check       func(t *testing.T, err error)
	}{
		{
			name: "success falls back to SPDY",
			server: &apiServer{allow: true, run: func(stdout, stderr io.Writer, _ <-chan bool) int {
				io.WriteString(stdout, "tar-bytes")
				io.WriteString(stderr, "NOTICE: all WAL segments archived\n")
				return 0
			}},
			want:        Result{ExitCode: 0, Stdout: 9, Stderr: "NOTICE: all WAL segments archived"},
			wantOut:     "tar-bytes",
			wantMethods: []string{"GET", "POST"},
		},
		{
			name: "non-zero exit",
			server: &apiServer{allow: true, run: func(stdout, stderr io.Writer, _ <-chan bool) int {
				io.WriteString(stderr, "pg_basebackup: error: connection refused\n")
				return 1
			}},
			want:        Result{ExitCode: 1, Stderr: "pg_basebackup: error: connection refused"},
			wantErr:     `command "pg_basebackup -Ft -D - -X fetch" in pod db/postgres-0, container postgres, exited with code 1: pg_basebackup: error: connection refused`,
			wantMethods: []string{"GET", "POST"},
			check: func(t *testing.T, err error) {
				var ce *CommandError
				if !errors.As(err, &ce) || ce.ExitCode != 1 || ce.TimedOut {
					t.Errorf("error %#v, want a CommandError with ExitCode 1", err)
				}
			},
		},
		{
			name:        "timeout",
			server:      &apiServer{allow: true, run: waitForClose},
			timeout:     300 * time.Millisecond,
			want:        Result{ExitCode: -1, Stdout: 7},
			wantOut:     "partial",
			wantErr:     "container postgres, did not finish within 300ms; its stream was closed",
			wantMethods: []string{"GET", "POST"},
			check: func(t *testing.T, err error) {
				var ce *CommandError
				if !errors.As(err, &ce) || !ce.TimedOut || ce.ExitCode != -1 {
					t.Errorf("error %#v, want a CommandError with TimedOut", err)
				}
			},
		},
		{
			name:        "stdout fails",
			server:      &apiServer{allow: true, run: waitForClose},
			timeout:     time.Minute,
			stdout:      failingWriter{},
			want:        Result{ExitCode: -1},
			wantErr:     `writing the standard output of "pg_basebackup -Ft -D - -X fetch" from pod db/postgres-0: no space left on device`,
			wantMethods: []string{"GET", "POST"},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, errDiskFull) {
					t.Errorf("error %v does not wrap the writer's", err)
				}
			},
		},
		{
			name:        "exec forbidden",
			server:      &apiServer{allow: true, status: http.StatusForbidden},
			want:        Result{ExitCode: -1},
			wantErr:     `may not create pods/exec in namespace "db": grant it a Role with the rule {apiGroups: [""], resources: ["pods/exec"], verbs: ["create"]} and bind`,
			wantMethods: []string{"GET", "POST"}, // the WebSocket 403 is an upgrade failure, so SPDY is tried too
			check: func(t *testing.T, err error) {
				var fe *ForbiddenError
				if !errors.As(err, &fe) || !slices.Equal(fe.Missing, []string{"create pods/exec"}) || !apierrors.IsForbidden(err) {
					t.Errorf("error %#v, want a ForbiddenError for create pods/exec wrapping the 403", err)
				}
				checkMessage(t, err, []string{`cannot create resource "pods/exec"`}, []string{`resources: ["pods"]`})
			},
		},
		{
			name:    "access review denies",
			server:  &apiServer{allow: false},
			want:    Result{ExitCode: -1},
			wantErr: "may not create pods/exec or get pods",
			check: func(t *testing.T, err error) {
				if fe := (*ForbiddenError)(nil); !errors.As(err, &fe) {
					t.Errorf("error %#v, want a ForbiddenError", err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.server.t = t
			srv := httptest.NewServer(tc.server)
			defer srv.Close()
			ex, err := New(&rest.Config{Host: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if tc.stdout == nil {
				tc.stdout = &out
			}
			start := time.Now()
			res, err := ex.Exec(context.Background(), "db", "postgres-0", Command{Container: "postgres", Argv: argv, Timeout: tc.timeout}, tc.stdout)
			if elapsed := time.Since(start); elapsed > 20*time.Second {
				t.Errorf("Exec took %s", elapsed)
			}
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if tc.wantErr != "" {
				checkMessage(t, err, []string{tc.wantErr}, nil)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
			res.Duration = 0
			if res != tc.want {
				t.Errorf("Result = %+v, want %+v", res, tc.want)
			}
			if out.String() != tc.wantOut {
				t.Errorf("stdout = %q, want %q", out.String(), tc.wantOut)
			}
			tc.server.mu.Lock()
			defer tc.server.mu.Unlock()
			if !slices.Equal(tc.server.methods, tc.wantMethods) {
				t.Errorf("exec requests %q, want %q", tc.server.methods, tc.wantMethods)
			}
			if tc.server.query != nil {
				q := tc.server.query
				if !slices.Equal(q["command"], argv) || q.Get("container") != "postgres" || q.Get("stdout") != "true" ||
					q.Get("stderr") != "true" || q.Has("stdin") || q.Has("tty") {
					t.Errorf("exec query %v, want the command in container postgres with stdout and stderr only", q)
				}
			}
		})
	}
}

// TestTransportErrorsOn403 pins what forbidden relies on: client-go's WebSocket executor hides
// the 403 inside an UpgradeFailureError, the SPDY executor returns it as is.
func TestTransportErrorsOn403(t *testing.T) {
	srv := httptest.NewServer(&apiServer{t: t, status: http.StatusForbidden})
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	url := srv.URL + "/api/v1/namespaces/db/pods/postgres-0/exec?command=true&stdout=true"
	opts := remotecommand.StreamOptions{Stdout: io.Discard}

	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", url)
	if err != nil {
		t.Fatal(err)
	}
	err = ws.StreamWithContext(context.Background(), opts)
	if !httpstream.IsUpgradeFailure(err) || apierrors.IsForbidden(err) || !forbidden(err) {
		t.Errorf("WebSocket error %#v: upgrade failure %v, IsForbidden %v, forbidden %v; want true, false, true",
			err, httpstream.IsUpgradeFailure(err), apierrors.IsForbidden(err), forbidden(err))
	}

	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	err = sp.StreamWithContext(context.Background(), opts)
	if httpstream.IsUpgradeFailure(err) || !apierrors.IsForbidden(err) || !forbidden(err) {
		t.Errorf("SPDY error %#v: want a bare Forbidden StatusError", err)
	}
}

func TestFake(t *testing.T) {
	f := &Fake{}
	if res, err := f.Exec(context.Background(), "db", "postgres-0", Command{Container: "postgres", Argv: []string{"true"}}, io.Discard); err != nil || res != (Result{}) {
		t.Errorf("default answer %+v, %v; want exit 0", res, err)
	}
	f.Run = func(c Call, stdout io.Writer) (Result, error) {
		n, _ := io.WriteString(stdout, c.Argv[0])
		return Result{ExitCode: 2, Stdout: int64(n)}, &CommandError{ExitCode: 2}
	}
	var out bytes.Buffer
	argv := []string{"pg_dump", "app"}
	res, err := f.Exec(context.Background(), "db", "postgres-1", Command{Container: "pg", Argv: argv}, &out)
	argv[0] = "changed"
	if res.ExitCode != 2 || res.Stdout != 7 || out.String() != "pg_dump" || err == nil {
		t.Errorf("Run's answer not returned: %+v, %v, %q", res, err, out.String())
	}
	want := []Call{{"db", "postgres-0", "postgres", []string{"true"}}, {"db", "postgres-1", "pg", []string{"pg_dump", "app"}}}
	if got := f.Calls(); !slices.EqualFunc(got, want, func(a, b Call) bool {
		return a.Namespace == b.Namespace && a.Pod == b.Pod && a.Container == b.Container && slices.Equal(a.Argv, b.Argv)
	}) {
		t.Errorf("Calls() = %+v, want %+v", got, want)
	}
}
