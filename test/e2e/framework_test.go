//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Names of the operator's installation, as in manifests/.
const (
	group                 = "platform.example.com"
	version               = "v1"
	operatorNamespace     = "backup-system"
	controllerName        = "backup-controller"
	controllerAccount     = "backup-controller"
	controllerAccountUser = "system:serviceaccount:" + operatorNamespace + ":" + controllerAccount
)

var (
	policiesGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "backuppolicies"}
	backupsGVR  = schema.GroupVersionResource{Group: group, Version: version, Resource: "backups"}
	restoresGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "restores"}
	crdGVR      = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// Env is the cluster the tests run against.
type Env struct {
	Kubeconfig  string
	Config      *rest.Config
	Kube        kubernetes.Interface
	Dynamic     dynamic.Interface
	RepoRoot    string
	KubectlPath string
}

// env is nil when KUBECONFIG is unset: every test then skips.
var env *Env

const skipMessage = "KUBECONFIG is not set: the e2e tests need a cluster " +
	"(make cluster-up deploy, then make e2e; see docs/local-cluster.md)"

func TestMain(m *testing.M) {
	if os.Getenv("KUBECONFIG") == "" {
		fmt.Println("e2e: " + skipMessage)
		os.Exit(m.Run())
	}
	e, err := newEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	if err := e.installCRDs(2 * time.Minute); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	env = e
	os.Exit(m.Run())
}

func newEnv() (*Env, error) {
	kubeconfig := os.Getenv("KUBECONFIG")
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading KUBECONFIG=%s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Timeout = 30 * time.Second
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = "kubectl"
	}
	if _, err := exec.LookPath(kubectl); err != nil {
		return nil, fmt.Errorf("kubectl not found (set KUBECTL or put it on PATH): %w", err)
	}
	if _, err := kube.Discovery().ServerVersion(); err != nil {
		return nil, fmt.Errorf("the cluster in KUBECONFIG=%s does not answer: %w", kubeconfig, err)
	}
	return &Env{Kubeconfig: kubeconfig, Config: cfg, Kube: kube, Dynamic: dyn, RepoRoot: root, KubectlPath: kubectl}, nil
}

// repoRoot is the directory of the module's go.mod above the test's directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// installCRDs applies manifests/crds (as `make deploy` does) and waits until
// every CRD is Established, so that each test can rely on the API.
func (e *Env) installCRDs(timeout time.Duration) error {
	dir := filepath.Join(e.RepoRoot, "manifests", "crds")
	if out, err := e.kubectl(context.Background(), nil, "apply", "-f", dir); err != nil {
		return fmt.Errorf("kubectl apply -f manifests/crds: %v\n%s", err, out)
	}
	names, err := crdNames(dir)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for _, name := range names {
		for {
			ok, reason := e.crdEstablished(name)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s is not Established after %v: %s", name, timeout, reason)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// crdNames reads metadata.name of every CRD file in dir.
func crdNames(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in %s (%v)", dir, err)
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if obj.Kind == "CustomResourceDefinition" {
			names = append(names, obj.Metadata.Name)
		}
	}
	return names, nil
}

func (e *Env) crdEstablished(name string) (bool, string) {
	crd, err := e.Dynamic.Resource(crdGVR).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" {
			return m["status"] == "True", fmt.Sprintf("Established=%v: %v", m["status"], m["message"])
		}
	}
	return false, "no Established condition yet"
}

// requireEnv skips the test when there is no cluster.
func requireEnv(t *testing.T) *Env {
	t.Helper()
	if env == nil {
		t.Skip(skipMessage)
	}
	return env
}

// ctx is a context for one test with a deadline well inside go test's.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Namespace creates a namespace for this test and deletes it when the test
// ends (kept, and said so, if the test failed and E2E_KEEP_NAMESPACES is set).
// It returns once the namespace's default ServiceAccount exists: the
// controller manager adds it asynchronously, and until then the API server
// refuses every pod there. Right after an API server restart that can take
// the controller manager's informers many seconds.
func (e *Env) Namespace(t *testing.T) string {
	t.Helper()
	base := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("e2e-%s-%04x", strings.Trim(base, "-"), rand.IntN(0x10000))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"e2e.platform.example.com/test": "true"}}}
	if _, err := e.Kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("E2E_KEEP_NAMESPACES") != "" {
			t.Logf("keeping namespace %s for inspection (E2E_KEEP_NAMESPACES is set)", name)
			return
		}
		policy := metav1.DeletePropagationForeground
		err := e.Kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &policy})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
	})
	Eventually(t, serviceAccountProvisionTimeout, 250*time.Millisecond, "the default ServiceAccount in namespace "+name, func() (bool, error) {
		_, err := e.Kube.CoreV1().ServiceAccounts(name).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, err
	})
	return name
}

// serviceAccountProvisionTimeout is how long a new namespace may go without
// its default ServiceAccount, as in the upstream e2e framework.
const serviceAccountProvisionTimeout = 2 * time.Minute

// Eventually polls cond every interval until it returns true, and fails the
// test after timeout with the description and the last error seen. cond may
// return an error along with false to say what it is still waiting for.
func Eventually(t *testing.T, timeout, interval time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			if last != nil {
				t.Fatalf("timed out after %v waiting for %s: last error: %v", timeout, what, last)
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// kubectl runs kubectl against the test cluster; stdin may be nil. It returns
// stdout, and on failure an error that includes stderr.
func (e *Env) kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.KubectlPath, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Kubectl is kubectl that fails the test on error.
func (e *Env) Kubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := e.kubectl(testContext(t), stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Object decodes a YAML manifest into an unstructured object.
func Object(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatalf("decoding manifest: %v\n%s", err, manifest)
	}
	return u
}

// Create creates obj in ns through the dynamic client.
func (e *Env) Create(ctx context.Context, gvr schema.GroupVersionResource, ns string, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return e.Dynamic.Resource(gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
}
