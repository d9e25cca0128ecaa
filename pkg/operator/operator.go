// Package operator runs the operator's controllers against an API server: it builds the
// informers and the event recorder from two clients, waits for the caches, and runs each
// controller until it is told to stop. The binary runs it with the clients its flags describe;
// benchmarks and tests run it with their own.
package operator

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	snapshotinformers "github.com/kubernetes-csi/external-snapshotter/client/v8/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	"platform.example.com/backup-operator/pkg/controller/backup"
	"platform.example.com/backup-operator/pkg/controller/backuppolicy"
	"platform.example.com/backup-operator/pkg/controller/backupstorage"
	"platform.example.com/backup-operator/pkg/controller/restore"
	"platform.example.com/backup-operator/pkg/controller/restoredrill"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
	platformscheme "platform.example.com/backup-operator/pkg/generated/clientset/versioned/scheme"
	informers "platform.example.com/backup-operator/pkg/generated/informers/externalversions"
	"platform.example.com/backup-operator/pkg/metrics"
)

func init() {
	// Events about the operator's own kinds need them in the scheme the recorder uses.
	utilruntime.Must(platformscheme.AddToScheme(scheme.Scheme))
}

// Config is how the controllers run.
type Config struct {
	// Namespace limits every informer to one namespace; empty watches all.
	Namespace string
	// Workers is how many objects of each kind are synced in parallel.
	Workers int
	// ResyncPeriod is how often every object is synced again though nothing changed.
	ResyncPeriod time.Duration
	// CacheSyncTimeout bounds the wait for the informers' first lists.
	CacheSyncTimeout time.Duration
	// AgentImage is the image the backup, restore and cleanup Jobs run.
	AgentImage string
	// AgentAPIServer is how agent pods that call the API server reach it (see
	// controller.Deps.AgentAPIServer).
	AgentAPIServer []corev1.EnvVar
	// Controllers names the controllers to run (see Names); empty runs all of them.
	Controllers []string
	// Synced, when set, is called once the caches are full and the controllers start.
	Synced func()
	// Metrics records what the controllers do; nil records nothing.
	Metrics *metrics.Metrics
	// EventClient, when set, is the client Events are written with. A client of its own has a
	// rate limiter of its own, so that the story of a burst of runs does not slow the runs.
	EventClient kubernetes.Interface
	// SnapshotClient, when set, is the client of the snapshot.storage.k8s.io API. It is used
	// only when the API server serves snapshot.storage.k8s.io/v1 at startup.
	SnapshotClient snapshotclient.Interface
	// LeaderElection, when set, runs the controllers only while this replica holds the Lease;
	// nil runs them at once, for a single replica.
	LeaderElection *LeaderElection
}

// runner is one controller.
type runner interface {
	Run(ctx context.Context, workers int)
}

// constructors make each controller from the shared dependencies, by name.
var constructors = map[string]func(controller.Deps) (runner, error){
	backuppolicy.ControllerName:  func(d controller.Deps) (runner, error) { return backuppolicy.NewController(d) },
	backup.ControllerName:        func(d controller.Deps) (runner, error) { return backup.NewController(d) },
	restore.ControllerName:       func(d controller.Deps) (runner, error) { return restore.NewController(d) },
	backupstorage.ControllerName: func(d controller.Deps) (runner, error) { return backupstorage.NewController(d) },
	restoredrill.ControllerName:  func(d controller.Deps) (runner, error) { return restoredrill.NewController(d) },
}

// Names lists the controllers Run knows, sorted.
func Names() []string {
	names := make([]string, 0, len(constructors))
	for name := range constructors {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Validate checks a list of controller names, as the --controllers flag gives it.
func Validate(names []string) error {
	for _, name := range names {
		if _, ok := constructors[name]; !ok {
			return fmt.Errorf("unknown controller %q: the controllers are %s", name, strings.Join(Names(), ", "))
		}
	}
	return nil
}

// Run builds the informers, the event recorder and the controllers, waits for the caches, runs
// the controllers until ctx is cancelled (with leader election, only while this replica leads),
// and then stops them all, each finishing the item in hand. It fails when the caches do not fill
// within cfg.CacheSyncTimeout, or when this replica could never take the Lease.
func Run(ctx context.Context, cfg Config, kubeClient kubernetes.Interface, client versioned.Interface) error {
	logger := klog.FromContext(ctx)
	if err := Validate(cfg.Controllers); err != nil {
		return err
	}
	if le := cfg.LeaderElection; le != nil {
		if err := le.Validate(); err != nil {
			return err
		}
		if err := checkLease(ctx, kubeClient, *le); err != nil {
			return err
		}
	}
	names := cfg.Controllers
	if len(names) == 0 {
		names = Names()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ownedSelector := metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: map[string]string{platformv1.LabelManagedBy: platformv1.ManagedByValue}})
	deps := controller.Deps{
		KubeClient: kubeClient,
		Client:     client,
		Informers:  informers.NewSharedInformerFactoryWithOptions(client, cfg.ResyncPeriod, informers.WithNamespace(cfg.Namespace)),
		OwnedInformers: kubeinformers.NewSharedInformerFactoryWithOptions(kubeClient, cfg.ResyncPeriod,
			kubeinformers.WithNamespace(cfg.Namespace),
			kubeinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = ownedSelector })),
		ClaimInformers: kubeinformers.NewSharedInformerFactoryWithOptions(kubeClient, cfg.ResyncPeriod, kubeinformers.WithNamespace(cfg.Namespace)),
		Clock:          clock.RealClock{},
		AgentImage:     cfg.AgentImage,
		AgentAPIServer: cfg.AgentAPIServer,
		Metrics:        cfg.Metrics,
	}
	snapshots, err := snapshotAPI(ctx, kubeClient, cfg.SnapshotClient)
	if err != nil {
		return err
	}
	deps.SnapshotClient = snapshots
	if deps.SnapshotClient != nil {
		deps.SnapshotInformers = snapshotinformers.NewSharedInformerFactoryWithOptions(deps.SnapshotClient, cfg.ResyncPeriod,
			snapshotinformers.WithNamespace(cfg.Namespace),
			snapshotinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = ownedSelector }))
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	eventClient := cfg.EventClient
	if eventClient == nil {
		eventClient = kubeClient
	}
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventClient.CoreV1().Events(cfg.Namespace)})
	defer broadcaster.Shutdown()
	deps.Recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "backup-controller"})

	runners := make([]runner, 0, len(names))
	for _, name := range names {
		r, err := constructors[name](deps)
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}

	// Only the informers the chosen controllers asked for are started.
	deps.Informers.Start(ctx.Done())
	deps.OwnedInformers.Start(ctx.Done())
	deps.ClaimInformers.Start(ctx.Done())
	if deps.SnapshotInformers != nil {
		deps.SnapshotInformers.Start(ctx.Done())
	}
	defer func() {
		// Stop the informers only after the workers: a worker may still read a lister.
		cancel()
		deps.Informers.Shutdown()
		deps.OwnedInformers.Shutdown()
		deps.ClaimInformers.Shutdown()
		if deps.SnapshotInformers != nil {
			deps.SnapshotInformers.Shutdown()
		}
	}()
	if err := waitForCaches(ctx, cfg.CacheSyncTimeout, deps); err != nil {
		return err
	}
	if cfg.Synced != nil {
		cfg.Synced()
	}
	runControllers := func(ctx context.Context) {
		logger.Info("Starting controllers", "controllers", names, "namespace", namespaceOrAll(cfg.Namespace), "workers", cfg.Workers)
		var wg sync.WaitGroup
		for _, r := range runners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.Run(ctx, cfg.Workers)
			}()
		}
		wg.Wait()
		logger.Info("Controllers stopped")
	}
	if cfg.LeaderElection == nil {
		runControllers(ctx)
		return nil
	}
	logger.Info("Caches synced; standing by until this replica holds the Lease")
	return lead(ctx, *cfg.LeaderElection, kubeClient, deps.Recorder, cfg.Metrics, runControllers)
}

// waitForCaches waits for every informer to list its objects once, and says which did not.
func waitForCaches(ctx context.Context, timeout time.Duration, deps controller.Deps) error {
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var missing []string
	for typ, ok := range deps.Informers.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			missing = append(missing, typ.String())
		}
	}
	for _, f := range []kubeinformers.SharedInformerFactory{deps.OwnedInformers, deps.ClaimInformers} {
		for typ, ok := range f.WaitForCacheSync(syncCtx.Done()) {
			if !ok {
				missing = append(missing, typ.String())
			}
		}
	}
	if deps.SnapshotInformers != nil {
		for typ, ok := range deps.SnapshotInformers.WaitForCacheSync(syncCtx.Done()) {
			if !ok {
				missing = append(missing, typ.String())
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sort.Strings(missing)
	return fmt.Errorf("informer caches for %s did not sync within %s: check that the operator's RBAC lets it list and watch them (the errors logged above name the refused request)", strings.Join(missing, ", "), timeout)
}

// snapshotAPI returns client when the API server serves snapshot.storage.k8s.io/v1, and nil
// when it does not: the operator runs without it, and Backups that ask for a snapshot fail
// with what to install. The API is looked up once, at startup.
func snapshotAPI(ctx context.Context, kubeClient kubernetes.Interface, client snapshotclient.Interface) (snapshotclient.Interface, error) {
	if client == nil {
		return nil, nil
	}
	_, err := kubeClient.Discovery().ServerResourcesForGroupVersion(snapshotv1.SchemeGroupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		klog.FromContext(ctx).Info("The API server does not serve " + snapshotv1.SchemeGroupVersion.String() + ": Backups with copyMethod Snapshot fail until the VolumeSnapshot CRDs and the snapshot-controller are installed and the operator is restarted")
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("looking up the %s API: %w", snapshotv1.SchemeGroupVersion, err)
	}
	return client, nil
}

func namespaceOrAll(ns string) string {
	if ns == "" {
		return "(all)"
	}
	return ns
}
