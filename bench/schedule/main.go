// Command schedule measures how late the BackupPolicy controller starts runs when many policies
// are due at once. Against a real API server it creates N policies, each selecting its own PVC,
// all due in the same minute; runs the policy controller in this process; and reports the skew
// between each run's scheduled time and its Backup's creation, when the API server answered the
// create (p50, p99, max), the same up to the Backup's arrival in a watch (unless --watch=false,
// which spares the burst the watcher's cost), which adds the API server's watch delivery, and
// the API requests the controller made per run.
//
//	go run ./bench/schedule --kubeconfig "$(make -s kubeconfig)" --policies 1000
//
// Only the policy controller runs, so no backup Jobs start; stop a deployed operator first, or
// it will act on the same policies.
//
// With --anchor the controller does not run: at the scheduled time --workers clients create the
// same Backups themselves, with nothing else (no status, no events). That is the floor the API
// server sets on this machine, against which the controller's skew is read.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/backuppolicy"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
	informers "platform.example.com/backup-operator/pkg/generated/informers/externalversions"
	"platform.example.com/backup-operator/pkg/names"
	"platform.example.com/backup-operator/pkg/operator"
)

type options struct {
	kubeconfig string
	namespace  string
	policies   int
	workers    int
	qps        float64
	burst      int
	lead       time.Duration
	keep       bool
	anchor     bool
	cpuprofile string
	watch      bool
}

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to measure against")
	flag.StringVar(&o.namespace, "namespace", "bench-schedule", "namespace to create the policies in; it is deleted first and at the end")
	flag.IntVar(&o.policies, "policies", 1000, "policies due in the same minute")
	flag.IntVar(&o.workers, "workers", 2, "the policy controller's workers (the controller's --workers)")
	flag.Float64Var(&o.qps, "kube-api-qps", 50, "the controller's client-side request rate limit (the controller's --kube-api-qps)")
	flag.IntVar(&o.burst, "kube-api-burst", 100, "the controller's client-side burst (the controller's --kube-api-burst)")
	flag.DurationVar(&o.lead, "lead", 60*time.Second, "least time between the start and the scheduled minute, to create the objects")
	flag.BoolVar(&o.keep, "keep", false, "keep the namespace afterwards")
	flag.BoolVar(&o.anchor, "anchor", false, "instead of the controller, create the Backups directly at the scheduled time: the API server's floor")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (the controller) from 2s before the scheduled time until every run is recorded")
	flag.BoolVar(&o.watch, "watch", true, "also time each Backup's arrival in a watch of the harness, which costs the API server and this process CPU during the burst")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "schedule benchmark: %v\n", err)
		os.Exit(1)
	}
}

// countingTransport counts the requests a client sends, and notes when each Backup create was
// answered: the moment the Backup exists.
type countingTransport struct {
	next    http.RoundTripper
	count   *atomic.Int64
	created *creations
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.count.Add(1)
	resp, err := c.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/backups") && resp.StatusCode == http.StatusCreated {
		c.created.add(time.Now())
	}
	return resp, err
}

// creations are the times Backup creates were answered.
type creations struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *creations) add(t time.Time) {
	c.mu.Lock()
	c.times = append(c.times, t)
	c.mu.Unlock()
}

func (c *creations) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.times)
}

// since returns each creation's delay after t, sorted.
func (c *creations) since(t time.Time) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, 0, len(c.times))
	for _, at := range c.times {
		out = append(out, at.Sub(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("loading --kubeconfig: %w", err)
	}
	// The harness's own client, free of the controller's limits, and not counted.
	harness := rest.CopyConfig(base)
	harness.QPS, harness.Burst = 500, 1000
	kube := kubernetes.NewForConfigOrDie(harness)
	platform := versioned.NewForConfigOrDie(harness)

	if err := refuseRunningOperator(ctx, kube); err != nil {
		return err
	}
	if err := resetNamespace(ctx, kube, o.namespace); err != nil {
		return err
	}
	if !o.keep {
		defer func() {
			_ = kube.CoreV1().Namespaces().Delete(context.Background(), o.namespace, metav1.DeleteOptions{})
		}()
	}

	// Every policy is due at the first whole minute at least --lead from now.
	due := time.Now().Add(o.lead).Truncate(time.Minute).Add(time.Minute).UTC()
	fmt.Printf("creating %d PVCs and %d policies due at %s\n", o.policies, o.policies, due.Format(time.RFC3339))
	if err := createObjects(ctx, kube, platform, o, due); err != nil {
		return err
	}

	// The controller, with its own counted clients.
	var requests atomic.Int64
	created := &creations{}
	ctrlConfig := rest.CopyConfig(base)
	ctrlConfig.QPS, ctrlConfig.Burst = float32(o.qps), o.burst
	ctrlConfig.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return countingTransport{next: rt, count: &requests, created: created}
	})
	ctrlKube := kubernetes.NewForConfigOrDie(ctrlConfig)
	ctrlPlatform := versioned.NewForConfigOrDie(ctrlConfig)
	if o.anchor {
		go createAtDue(ctx, versioned.NewForConfigOrDie(ctrlConfig), o, due)
	} else {
		go func() {
			// As the binary does: events on a client of their own, counted too.
			cfg := operator.Config{Namespace: o.namespace, Workers: o.workers, CacheSyncTimeout: time.Minute,
				Controllers: []string{backuppolicy.ControllerName}, EventClient: kubernetes.NewForConfigOrDie(ctrlConfig)}
			if err := operator.Run(ctx, cfg, ctrlKube, ctrlPlatform); err != nil {
				fmt.Fprintf(os.Stderr, "schedule benchmark: the policy controller stopped: %v\n", err)
				os.Exit(1)
			}
		}()
	}

	// With --watch, time each Backup's arrival through an informer of the harness, which
	// survives a watch that the API server closes.
	arrivals := make(chan time.Duration, o.policies)
	if o.watch {
		watcher := informers.NewSharedInformerFactoryWithOptions(platform, 0, informers.WithNamespace(o.namespace))
		if _, err := watcher.Platform().V1().Backups().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(interface{}) { arrivals <- time.Since(due) },
		}); err != nil {
			return err
		}
		watcher.Start(ctx.Done())
		watcher.WaitForCacheSync(ctx.Done())
	}
	time.Sleep(time.Until(due.Add(-2 * time.Second)))
	before := requests.Load()
	if o.cpuprofile != "" {
		stop, err := profileCPU(o.cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	var skews []time.Duration
	timeout := time.After(time.Until(due) + 5*time.Minute)
	for created.count() < o.policies || (o.watch && len(skews) < o.policies) {
		select {
		case d := <-arrivals:
			skews = append(skews, d)
		case <-time.After(10 * time.Millisecond):
		case <-timeout:
			return fmt.Errorf("within 5 minutes of the scheduled time, %d of %d Backups were created and %d seen", created.count(), o.policies, len(skews))
		}
	}
	// The run is over when every policy has recorded it.
	if o.anchor {
		// No controller records anything.
	} else if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := platform.PlatformV1().BackupPolicies(o.namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range list.Items {
			if p.Status.LastScheduleTime == nil || !p.Status.LastScheduleTime.Time.Equal(due) {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("not every policy recorded its run: %w", err)
	}
	perRun := float64(requests.Load()-before) / float64(o.policies)
	if err := checkScheduledTimes(ctx, platform, o, due); err != nil {
		return err
	}

	sort.Slice(skews, func(i, j int) bool { return skews[i] < skews[j] })
	answered := created.since(due)
	if len(answered) != o.policies {
		return fmt.Errorf("%d Backup creates were answered, want one per policy (%d)", len(answered), o.policies)
	}
	fmt.Printf("\npolicies due at once   %d\n", o.policies)
	if o.anchor {
		fmt.Printf("anchor                 %d clients create the Backups at the scheduled time, nothing else\n", o.workers)
	} else {
		fmt.Printf("controller             workers=%d kube-api-qps=%g kube-api-burst=%d\n", o.workers, o.qps, o.burst)
	}
	fmt.Println("skew, scheduled time to the Backup's create answered (goal: p99 under 2s):")
	fmt.Printf("  p50 %s   p99 %s   max %s\n", percentile(answered, 0.50).Round(time.Millisecond),
		percentile(answered, 0.99).Round(time.Millisecond), answered[len(answered)-1].Round(time.Millisecond))
	if o.watch {
		fmt.Println("skew, scheduled time to the Backup seen in a watch (adds the API server's watch delivery):")
		fmt.Printf("  p50 %s   p99 %s   max %s\n", percentile(skews, 0.50).Round(time.Millisecond),
			percentile(skews, 0.99).Round(time.Millisecond), skews[len(skews)-1].Round(time.Millisecond))
	}
	fmt.Printf("API requests per run   %.2f (Backup create, status update, event)\n", perRun)
	return nil
}

// checkScheduledTimes fails unless every Backup names the scheduled time of the run.
func checkScheduledTimes(ctx context.Context, platform versioned.Interface, o options, due time.Time) error {
	list, err := platform.PlatformV1().Backups(o.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(list.Items) != o.policies {
		return fmt.Errorf("%d Backups exist, want one per policy (%d)", len(list.Items), o.policies)
	}
	for _, b := range list.Items {
		if at := b.Annotations[platformv1.AnnotationScheduledTime]; at != due.Format(time.RFC3339) {
			return fmt.Errorf("Backup %s carries scheduled time %q, want %s", b.Name, at, due.Format(time.RFC3339))
		}
	}
	return nil
}

// profileCPU starts a CPU profile into path; the returned func ends it.
func profileCPU(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// createAtDue is the anchor: at the scheduled time, o.workers clients create one Backup per
// policy, named and labeled as the controller names them, and nothing else.
func createAtDue(ctx context.Context, platform versioned.Interface, o options, due time.Time) {
	time.Sleep(time.Until(due))
	run := strconv.FormatInt(due.Unix()/60, 10)
	err := forEach(o.policies, o.workers, func(i int) error {
		policy, claim := fmt.Sprintf("policy-%04d", i), fmt.Sprintf("claim-%04d", i)
		b := &platformv1.Backup{
			ObjectMeta: metav1.ObjectMeta{
				Name: names.Join(policy, claim, run),
				Labels: map[string]string{platformv1.LabelPolicy: policy, platformv1.LabelPVC: claim,
					platformv1.LabelManagedBy: platformv1.ManagedByValue},
				Annotations: map[string]string{platformv1.AnnotationScheduledTime: due.Format(time.RFC3339)},
			},
			Spec: platformv1.BackupSpec{PVCName: claim, PolicyName: policy},
		}
		_, err := platform.PlatformV1().Backups(o.namespace).Create(ctx, b, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "schedule benchmark: creating the anchor's Backups: %v\n", err)
		os.Exit(1)
	}
}

// forEach calls f for 0..n-1 on workers goroutines and returns the first error.
func forEach(n, workers int, f func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

// refuseRunningOperator stops the measurement when a deployed operator would act on the same
// policies and double every run.
func refuseRunningOperator(ctx context.Context, kube kubernetes.Interface) error {
	d, err := kube.AppsV1().Deployments("backup-system").Get(ctx, "backup-controller", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.Status.ReadyReplicas > 0 {
		return fmt.Errorf("the operator runs in the cluster and would act on the benchmark's policies: stop it first (kubectl -n backup-system scale deployment/backup-controller --replicas=0)")
	}
	return nil
}

func resetNamespace(ctx context.Context, kube kubernetes.Interface, ns string) error {
	err := kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		return fmt.Errorf("namespace %s from an earlier run is still being deleted: %w", ns, err)
	}
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	return err
}

// createObjects makes one PVC and one policy selecting it per index, in parallel.
func createObjects(ctx context.Context, kube kubernetes.Interface, platform versioned.Interface, o options, due time.Time) error {
	schedule := fmt.Sprintf("%d %d * * *", due.Minute(), due.Hour())
	keep := int32(3)
	err := forEach(o.policies, 16, func(i int) error {
		id := fmt.Sprintf("%04d", i)
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "claim-" + id, Labels: map[string]string{"bench-claim": id}},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		if _, err := kube.CoreV1().PersistentVolumeClaims(o.namespace).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
			return err
		}
		policy := &platformv1.BackupPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "policy-" + id},
			Spec: platformv1.BackupPolicySpec{
				Schedule:  schedule,
				Target:    platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"bench-claim": id}}},
				Retention: &platformv1.RetentionPolicy{KeepLast: &keep},
			},
		}
		_, err := platform.PlatformV1().BackupPolicies(o.namespace).Create(ctx, policy, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("creating the benchmark's objects: %w", err)
	}
	if time.Now().After(due.Add(-5 * time.Second)) {
		return fmt.Errorf("creating the objects took until %s, too close to the scheduled minute %s: raise --lead", time.Now().UTC().Format(time.RFC3339), due.Format(time.RFC3339))
	}
	return nil
}
