package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func clientFor(t *testing.T, url string) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(&rest.Config{Host: url})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// apiServer serves /version and, when served is true, the operator's group version.
func apiServer(t *testing.T, versionStatus int, served bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/version":
			w.WriteHeader(versionStatus)
			fmt.Fprint(w, `{"major":"1","minor":"34","gitVersion":"v1.34.4"}`)
		case r.URL.Path == "/apis/platform.example.com/v1" && served:
			fmt.Fprint(w, `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"platform.example.com/v1","resources":[]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCheckAPIServer(t *testing.T) {
	unreachable := httptest.NewServer(http.NotFoundHandler())
	unreachableURL := unreachable.URL
	unreachable.Close() // nothing listens there any more

	tests := []struct {
		name    string
		url     string
		wantErr string
	}{
		{"serving the operator's API", apiServer(t, http.StatusOK, true).URL, ""},
		{"unreachable", unreachableURL, "cannot reach the Kubernetes API server at " + unreachableURL},
		{"CRDs not installed", apiServer(t, http.StatusOK, false).URL, "install the CRDs first"},
		{"credentials refused", apiServer(t, http.StatusUnauthorized, true).URL, "refused the credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := checkAPIServer(context.Background(), clientFor(t, tc.url), tc.url, 1500*time.Millisecond)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Fatalf("took %s to fail; the timeout was 1.5s", elapsed)
			}
		})
	}
}

func TestRunControllerFailsClearlyAgainstAnUnreachableServer(t *testing.T) {
	unreachable := httptest.NewServer(http.NotFoundHandler())
	url := unreachable.URL
	unreachable.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+url+`"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		done <- runController(context.Background(), []string{"--kubeconfig", kubeconfig, "--startup-timeout", "2s"}, &bytes.Buffer{})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cannot reach the Kubernetes API server at "+url) {
			t.Fatalf("error %v, want one naming the unreachable server", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("runController hung against an unreachable server")
	}
}

func TestRunControllerRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--workers", "0"},
		{"--startup-timeout", "0s"},
		{"--no-such-flag"},
		{"frobnicate"},
		{"--controllers", "backuppolicy,archiver"},
		{"--kube-api-qps", "0"},
		{"--leader-elect-lease-duration", "10s", "--leader-elect-renew-deadline", "10s"},
		{"--leader-elect-retry-period", "0s"},
	} {
		var stderr bytes.Buffer
		if err := runController(context.Background(), args, &stderr); err == nil {
			t.Errorf("runController(%q) accepted bad input", args)
		}
	}
}

func TestLeaderElectionFlags(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	var opts options
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	opts.bind(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !opts.leaderElect {
		t.Fatal("leader election is off by default; two replicas would both act")
	}
	if le := opts.leaderElection(env(map[string]string{envPodNamespace: "ops"}), "id"); le.Namespace != "ops" || le.Name != "backup-operator" {
		t.Fatalf("in a pod the Lease is %s/%s, want ops/backup-operator (the pod's namespace)", le.Namespace, le.Name)
	}
	if le := opts.leaderElection(env(nil), "id"); le.Namespace != "backup-system" {
		t.Fatalf("outside a pod the Lease is in %q, want backup-system", le.Namespace)
	}
	if err := fs.Parse([]string{"--leader-elect-resource-namespace", "elsewhere", "--leader-elect-resource-name", "mine"}); err != nil {
		t.Fatal(err)
	}
	if le := opts.leaderElection(env(map[string]string{envPodNamespace: "ops"}), "id"); le.Namespace != "elsewhere" || le.Name != "mine" {
		t.Fatalf("the flags name the Lease %s/%s, want elsewhere/mine", le.Namespace, le.Name)
	}

	a, b := identity(env(map[string]string{envPodName: "backup-controller-x"})), identity(env(map[string]string{envPodName: "backup-controller-x"}))
	if a == b || !strings.HasPrefix(a, "backup-controller-x_") {
		t.Fatalf("identities %q and %q: want the pod name and a suffix unique to the process", a, b)
	}
}

// Agent pods that call the API server are told the controller's own address of it, and
// nothing outside a cluster, where the kubelet's injection is all they can have.
func TestAPIServerEnv(t *testing.T) {
	inCluster := map[string]string{"KUBERNETES_SERVICE_HOST": "10.217.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
	env := apiServerEnv(func(k string) string { return inCluster[k] })
	if len(env) != 2 || env[0].Name != "KUBERNETES_SERVICE_HOST" || env[0].Value != "10.217.0.1" || env[1].Name != "KUBERNETES_SERVICE_PORT" || env[1].Value != "6443" {
		t.Fatalf("in a cluster: %+v", env)
	}
	if env := apiServerEnv(func(string) string { return "" }); env != nil {
		t.Fatalf("outside a cluster: %+v, want none", env)
	}
}
