package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
	"platform.example.com/backup-operator/pkg/metrics"
	"platform.example.com/backup-operator/pkg/operator"
)

// options are the controller's command-line flags.
type options struct {
	kubeconfig       string
	master           string
	namespace        string
	workers          int
	resyncPeriod     time.Duration
	startupTimeout   time.Duration
	cacheSyncTimeout time.Duration
	agentImage       string
	controllers      string
	kubeAPIQPS       float64
	kubeAPIBurst     int
	httpAddress      string

	leaderElect    bool
	leaseNamespace string
	leaseName      string
	leaseDuration  time.Duration
	renewDeadline  time.Duration
	retryPeriod    time.Duration
}

func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig. Empty: the in-cluster configuration of the pod's ServiceAccount.")
	fs.StringVar(&o.master, "master", "", "Address of the Kubernetes API server. Overrides the server in --kubeconfig.")
	fs.StringVar(&o.namespace, "namespace", metav1.NamespaceAll, "Only watch this namespace. Empty: every namespace.")
	fs.IntVar(&o.workers, "workers", 2, "Objects of each kind synced in parallel.")
	fs.DurationVar(&o.resyncPeriod, "resync-period", 10*time.Minute, "How often every object is synced again even when nothing changed: a safety net, not a schedule.")
	fs.DurationVar(&o.startupTimeout, "startup-timeout", 30*time.Second, "How long to wait for the API server at start before exiting with an error.")
	fs.StringVar(&o.agentImage, "agent-image", "", "Image the backup, restore and cleanup Jobs run the agent from. Empty: the controller's own image, read from its pod (POD_NAME and POD_NAMESPACE from the downward API). Required with --kubeconfig outside the cluster.")
	fs.StringVar(&o.httpAddress, "http-bind-address", ":8080", "Address of the HTTP server for /metrics, /healthz and /readyz. Empty: no server.")
	fs.StringVar(&o.controllers, "controllers", "", "Comma-separated controllers to run, of "+strings.Join(operator.Names(), ", ")+". Empty: all.")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 50, "Requests per second the controller may send to the API server, on average; the API server's priority and fairness protects it beyond that.")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 100, "Requests the controller may send to the API server in a burst above --kube-api-qps, such as when many policies are due at once.")
	fs.DurationVar(&o.cacheSyncTimeout, "cache-sync-timeout", 2*time.Minute, "How long to wait for the informer caches to fill before exiting with an error (a missing RBAC permission is the usual cause).")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "Run the controllers only while holding a Lease, so that of several replicas exactly one acts and a standby takes over when it dies. Turn off only for a single replica.")
	fs.StringVar(&o.leaseNamespace, "leader-elect-resource-namespace", "", "Namespace of the leader election Lease. Empty: the pod's own namespace (POD_NAMESPACE), else "+defaultLeaseNamespace+".")
	fs.StringVar(&o.leaseName, "leader-elect-resource-name", defaultLeaseName, "Name of the leader election Lease.")
	fs.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long standbys wait after the leader's last renewal before one takes over: the longest a dead leader goes unnoticed.")
	fs.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew its Lease before it stops its controllers; shorter than the lease duration.")
	fs.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often candidates try to take the Lease, and the leader to renew it.")
}

// The Lease replicas elect a leader with, unless the flags say otherwise.
const (
	defaultLeaseName      = "backup-operator"
	defaultLeaseNamespace = "backup-system"
)

func (o *options) validate() error {
	if o.workers < 1 {
		return fmt.Errorf("--workers must be at least 1, got %d", o.workers)
	}
	if o.resyncPeriod < 0 || o.startupTimeout <= 0 || o.cacheSyncTimeout <= 0 {
		return errors.New("--resync-period must not be negative, and --startup-timeout and --cache-sync-timeout must be positive")
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst < 1 {
		return fmt.Errorf("--kube-api-qps must be positive and --kube-api-burst at least 1, got %g and %d", o.kubeAPIQPS, o.kubeAPIBurst)
	}
	if o.leaderElect {
		if err := o.leaderElection(os.Getenv, "identity").Validate(); err != nil {
			return fmt.Errorf("--leader-elect-*: %w", err)
		}
	}
	return operator.Validate(o.controllerNames())
}

// leaderElection is the Lease the flags name. The identity is the pod's name (or the host's)
// with a random suffix: a restarted pod of the same name is a new candidate, not the holder.
func (o *options) leaderElection(getenv func(string) string, identity string) operator.LeaderElection {
	namespace := o.leaseNamespace
	if namespace == "" {
		namespace = getenv(envPodNamespace)
	}
	if namespace == "" {
		namespace = defaultLeaseNamespace
	}
	return operator.LeaderElection{
		Namespace:     namespace,
		Name:          o.leaseName,
		Identity:      identity,
		LeaseDuration: o.leaseDuration,
		RenewDeadline: o.renewDeadline,
		RetryPeriod:   o.retryPeriod,
	}
}

// identity names this process among the candidates for the Lease.
func identity(getenv func(string) string) string {
	name := getenv(envPodName)
	if name == "" {
		name, _ = os.Hostname()
	}
	return name + "_" + string(uuid.NewUUID())
}

// controllerNames splits --controllers.
func (o *options) controllerNames() []string {
	var names []string
	for _, name := range strings.Split(o.controllers, ",") {
		if name = strings.TrimSpace(name); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// runController parses the controller's flags, connects to the API server and runs the
// controllers until ctx is cancelled.
func runController(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: backup-controller [flags]          run the controllers\n"+
			"       backup-controller agent COMMAND ...  run the archive agent (backup, restore, verify, delete)\n"+
			"       backup-controller version            print the version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	klog.InitFlags(fs)
	var opts options
	opts.bind(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: the subcommands are agent and version; see --help", fs.Arg(0))
	}
	if err := opts.validate(); err != nil {
		return err
	}

	// Before any client or workqueue exists, so that client-go reports into the registry.
	m := metrics.New()
	m.RegisterClientGo()

	cfg, err := clientcmd.BuildConfigFromFlags(opts.master, opts.kubeconfig)
	if err != nil {
		return fmt.Errorf("building the API client configuration (--kubeconfig=%q, --master=%q): %w", opts.kubeconfig, opts.master, err)
	}
	cfg.UserAgent = "backup-controller/" + agent.Version
	cfg.QPS, cfg.Burst = float32(opts.kubeAPIQPS), opts.kubeAPIBurst
	kubeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the platform.example.com client: %w", err)
	}
	if err := checkAPIServer(ctx, kubeClient, cfg.Host, opts.startupTimeout); err != nil {
		return err
	}
	if opts.agentImage, err = resolveAgentImage(ctx, opts, os.Getenv, kubeClient); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Agent Jobs run image", "image", opts.agentImage)
	config := opts.operatorConfig()
	config.Metrics = m
	if config.SnapshotClient, err = snapshotclient.NewForConfig(cfg); err != nil {
		return fmt.Errorf("creating the snapshot.storage.k8s.io client: %w", err)
	}
	// Events get a client, and so a rate limiter, of their own.
	if config.EventClient, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("creating the events client: %w", err)
	}
	var health *operator.LeaseHealth
	if opts.leaderElect {
		le := opts.leaderElection(os.Getenv, identity(os.Getenv))
		// A leader that has not renewed its Lease for 20s past its duration is wedged: the
		// liveness probe fails and the kubelet restarts it.
		health = operator.NewLeaseHealth(le.LeaseDuration, 20*time.Second, clock.RealClock{})
		le.Health = health
		config.LeaderElection = &le
		klog.FromContext(ctx).Info("Leader election", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
	}
	if opts.httpAddress != "" {
		endpoints, err := serveEndpoints(ctx, opts.httpAddress, m, health)
		if err != nil {
			return err
		}
		defer endpoints.shutdown()
		config.Synced = func() { endpoints.ready.Store(true) }
	}
	return operator.Run(ctx, config, kubeClient, client)
}

// operatorConfig is how the flags ask the controllers to run.
func (o *options) operatorConfig() operator.Config {
	return operator.Config{
		Namespace:        o.namespace,
		Workers:          o.workers,
		ResyncPeriod:     o.resyncPeriod,
		CacheSyncTimeout: o.cacheSyncTimeout,
		AgentImage:       o.agentImage,
		AgentAPIServer:   apiServerEnv(os.Getenv),
		Controllers:      o.controllerNames(),
	}
}

// Environment variables through which the downward API tells the controller its own pod.
const (
	envPodName      = "POD_NAME"
	envPodNamespace = "POD_NAMESPACE"
)

// controllerContainer is the container of the controller's Deployment that runs this binary.
const controllerContainer = "controller"

// apiServerEnv is the address the controller's pod reaches the API server at, for the agent pods
// that call it; none outside a cluster, where the agent pods keep what the kubelet gives them.
func apiServerEnv(getenv func(string) string) []corev1.EnvVar {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil
	}
	return []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: host}, {Name: "KUBERNETES_SERVICE_PORT", Value: port}}
}

// resolveAgentImage returns the image the agent Jobs run: --agent-image when set, else the image
// of the controller's own container, so that the agent always speaks the controller's version of
// the result format.
func resolveAgentImage(ctx context.Context, opts options, getenv func(string) string, kubeClient kubernetes.Interface) (string, error) {
	if opts.agentImage != "" {
		return opts.agentImage, nil
	}
	name, namespace := getenv(envPodName), getenv(envPodNamespace)
	if name == "" || namespace == "" {
		if opts.kubeconfig != "" {
			return "", fmt.Errorf("--agent-image is required outside the cluster (--kubeconfig=%q): name an image that holds this binary, for the Jobs to run", opts.kubeconfig)
		}
		return "", fmt.Errorf("cannot tell which image the Jobs should run: set --agent-image, or set %s and %s from the downward API (fieldRef metadata.name and metadata.namespace) as manifests/deployment.yaml does", envPodName, envPodNamespace)
	}
	pod, err := kubeClient.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading the controller's own pod %s/%s to find its image: %w; allow get on pods or set --agent-image", namespace, name, err)
	}
	var names []string
	for _, c := range pod.Spec.Containers {
		if c.Name == controllerContainer || len(pod.Spec.Containers) == 1 {
			return c.Image, nil
		}
		names = append(names, c.Name)
	}
	return "", fmt.Errorf("pod %s/%s has no container named %q among %s to take the agent image from: set --agent-image", namespace, name, controllerContainer, strings.Join(names, ", "))
}

// checkAPIServer fails fast, with a message that says what to fix, when the API server cannot be
// reached or does not serve the operator's API; otherwise informers would retry silently forever.
func checkAPIServer(ctx context.Context, kubeClient kubernetes.Interface, host string, timeout time.Duration) error {
	logger := klog.FromContext(ctx)
	pollCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	err := wait.PollUntilContextCancel(pollCtx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		_, lastErr = kubeClient.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
		switch {
		case lastErr == nil:
			return true, nil
		case apierrors.IsUnauthorized(lastErr):
			return false, fmt.Errorf("the API server at %s refused the credentials: %w; check the user in --kubeconfig or the pod's ServiceAccount token", host, lastErr)
		default:
			logger.Info("Waiting for the API server", "host", host, "err", lastErr)
			return false, nil
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if lastErr != nil && !apierrors.IsUnauthorized(lastErr) {
			return fmt.Errorf("cannot reach the Kubernetes API server at %s within %s: %v; check --kubeconfig and --master (or the in-cluster configuration) and that the server is running", host, timeout, lastErr)
		}
		return err
	}

	gv := platformv1.SchemeGroupVersion
	_, err = kubeClient.Discovery().RESTClient().Get().AbsPath("/apis", gv.Group, gv.Version).Do(pollCtx).Raw()
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the API server at %s does not serve %s: install the CRDs first (kubectl apply -f manifests/crds/)", host, gv)
	}
	if err != nil {
		return fmt.Errorf("asking the API server at %s for %s: %w", host, gv, err)
	}
	return nil
}
