package agentjobtest

import (
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapshotfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	snapshotinformers "github.com/kubernetes-csi/external-snapshotter/client/v8/informers/externalversions"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubeinformers "k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
	informers "platform.example.com/backup-operator/pkg/generated/informers/externalversions"
	"platform.example.com/backup-operator/pkg/metrics"
)

// Image is the agent image every controller test runs with.
const Image = "backup-operator:test"

// Fixture seeds objects into the fake clientsets and the informers' indexers, builds a
// controller on them and hands back what the clients recorded, in the style of the
// sample-controller's tests. Each controller's tests wrap it with how to sync their object.
type Fixture struct {
	T *testing.T

	Backups  []*platformv1.Backup
	Restores []*platformv1.Restore
	Storages []*platformv1.BackupStorage
	Policies []*platformv1.BackupPolicy
	Drills   []*platformv1.RestoreDrill
	Claims   []*corev1.PersistentVolumeClaim
	// Jobs and AgentPods are in the API and in the filtered informers' caches.
	Jobs      []*batchv1.Job
	AgentPods []*corev1.Pod
	// APIOnly objects are in the API but not (yet) in any cache: other workloads' pods, and
	// objects the cache has not caught up with.
	APIOnly []runtime.Object

	// Snapshots are VolumeSnapshots in the API and in the cache; SnapshotClasses are in the API.
	Snapshots       []*snapshotv1.VolumeSnapshot
	SnapshotClasses []*snapshotv1.VolumeSnapshotClass
	// NoSnapshotAPI runs the controller as on a cluster without the VolumeSnapshot API.
	NoSnapshotAPI bool

	// React, when set, installs reactors on the kube client before the sync.
	React func(*kubefake.Clientset)
	// ReactPlatform, when set, installs reactors on the platform.example.com client.
	ReactPlatform func(*fake.Clientset)

	// sync builds the controller under test with Build and syncs its object once.
	sync func(*Fixture) (time.Duration, error)

	// Client, KubeClient and Recorder are made by Build; Clock starts ten minutes after Epoch.
	Client     *fake.Clientset
	KubeClient *kubefake.Clientset
	// SnapshotClient is nil with NoSnapshotAPI.
	SnapshotClient *snapshotfake.Clientset
	Clock          *clocktesting.FakeClock
	Recorder       *record.FakeRecorder
	// Metrics records what the controller under test reports.
	Metrics *metrics.Metrics
}

// NewFixture is an empty fixture for t whose Run syncs with sync: each controller's tests say
// how to build their controller and which object to sync.
func NewFixture(t *testing.T, sync func(*Fixture) (time.Duration, error)) *Fixture {
	return &Fixture{T: t, Clock: clocktesting.NewFakeClock(Epoch.Add(10 * time.Minute)), Metrics: metrics.New(), sync: sync}
}

// Run syncs once; the recorded actions then hold only what the sync did.
func (f *Fixture) Run() (time.Duration, error) {
	f.T.Helper()
	return f.sync(f)
}

// MustRun is Run for a sync that must succeed.
func (f *Fixture) MustRun() time.Duration {
	f.T.Helper()
	requeue, err := f.Run()
	if err != nil {
		f.T.Fatalf("sync failed: %v", err)
	}
	return requeue
}

// Build makes the fake clients from f's objects and a controller on them with newController,
// then fills the caches, as if the informers had synced.
func Build[C any](f *Fixture, newController func(controller.Deps) (C, error)) C {
	f.T.Helper()
	var objs []runtime.Object
	for _, b := range f.Backups {
		objs = append(objs, b)
	}
	for _, r := range f.Restores {
		objs = append(objs, r)
	}
	for _, s := range f.Storages {
		objs = append(objs, s)
	}
	for _, p := range f.Policies {
		objs = append(objs, p)
	}
	for _, d := range f.Drills {
		objs = append(objs, d)
	}
	f.Client = fake.NewSimpleClientset(objs...)
	var kubeObjs []runtime.Object
	for _, c := range f.Claims {
		kubeObjs = append(kubeObjs, c)
	}
	for _, j := range f.Jobs {
		kubeObjs = append(kubeObjs, j)
	}
	for _, p := range f.AgentPods {
		kubeObjs = append(kubeObjs, p)
	}
	kubeObjs = append(kubeObjs, f.APIOnly...)
	f.KubeClient = kubefake.NewSimpleClientset(kubeObjs...)
	if f.ReactPlatform != nil {
		f.ReactPlatform(f.Client)
	}
	if f.React != nil {
		f.React(f.KubeClient)
	}
	f.Recorder = record.NewFakeRecorder(100)

	deps := controller.Deps{
		KubeClient:     f.KubeClient,
		Client:         f.Client,
		Informers:      informers.NewSharedInformerFactory(f.Client, 0),
		OwnedInformers: kubeinformers.NewSharedInformerFactory(f.KubeClient, 0),
		ClaimInformers: kubeinformers.NewSharedInformerFactory(f.KubeClient, 0),
		Recorder:       f.Recorder,
		Clock:          f.Clock,
		AgentImage:     Image,
		AgentAPIServer: APIServer,
		Metrics:        f.Metrics,
	}
	if !f.NoSnapshotAPI {
		var snapObjs []runtime.Object
		for _, s := range f.Snapshots {
			snapObjs = append(snapObjs, s)
		}
		for _, cl := range f.SnapshotClasses {
			snapObjs = append(snapObjs, cl)
		}
		f.SnapshotClient = snapshotfake.NewSimpleClientset(snapObjs...)
		deps.SnapshotClient = f.SnapshotClient
		deps.SnapshotInformers = snapshotinformers.NewSharedInformerFactory(f.SnapshotClient, 0)
	}
	c, err := newController(deps)
	if err != nil {
		f.T.Fatal(err)
	}
	for _, s := range f.Snapshots {
		f.must(deps.SnapshotInformers.Snapshot().V1().VolumeSnapshots().Informer().GetIndexer().Add(s))
	}
	for _, b := range f.Backups {
		f.must(deps.Informers.Platform().V1().Backups().Informer().GetIndexer().Add(b))
	}
	for _, r := range f.Restores {
		f.must(deps.Informers.Platform().V1().Restores().Informer().GetIndexer().Add(r))
	}
	for _, s := range f.Storages {
		f.must(deps.Informers.Platform().V1().BackupStorages().Informer().GetIndexer().Add(s))
	}
	for _, p := range f.Policies {
		f.must(deps.Informers.Platform().V1().BackupPolicies().Informer().GetIndexer().Add(p))
	}
	for _, d := range f.Drills {
		f.must(deps.Informers.Platform().V1().RestoreDrills().Informer().GetIndexer().Add(d))
	}
	for _, cl := range f.Claims {
		f.must(deps.ClaimInformers.Core().V1().PersistentVolumeClaims().Informer().GetIndexer().Add(cl))
	}
	for _, j := range f.Jobs {
		f.must(deps.OwnedInformers.Batch().V1().Jobs().Informer().GetIndexer().Add(j))
	}
	for _, p := range f.AgentPods {
		f.must(deps.OwnedInformers.Core().V1().Pods().Informer().GetIndexer().Add(p))
	}
	return c
}

func (f *Fixture) must(err error) {
	f.T.Helper()
	if err != nil {
		f.T.Fatal(err)
	}
}

// ExpectActions fails the test unless the clients recorded exactly want, in order: those on
// Backups, Restores and RestoreDrills from the platform client, those on VolumeSnapshots and
// their classes from the snapshot client, the others from the kube client.
func (f *Fixture) ExpectActions(want ...string) {
	f.T.Helper()
	ExpectActions(f.T, "platform client", f.Client.Actions(), filter(want, clientPlatform)...)
	ExpectActions(f.T, "kube client", f.KubeClient.Actions(), filter(want, clientKube)...)
	if f.SnapshotClient != nil {
		ExpectActions(f.T, "snapshot client", f.SnapshotClient.Actions(), filter(want, clientSnapshot)...)
	}
}

const (
	clientPlatform = iota
	clientKube
	clientSnapshot
)

// filter keeps the actions of one client.
func filter(actions []string, client int) []string {
	var out []string
	for _, a := range actions {
		of := clientKube
		switch {
		case strings.Contains(a, " backups") || strings.Contains(a, " restores") || strings.Contains(a, " restoredrills"):
			of = clientPlatform
		case strings.Contains(a, " volumesnapshot"):
			of = clientSnapshot
		}
		if of == client {
			out = append(out, a)
		}
	}
	return out
}

// CreatedJob is the Job the sync created, failing the test when it created none.
func (f *Fixture) CreatedJob() *batchv1.Job {
	f.T.Helper()
	return Object[*batchv1.Job](f.T, f.KubeClient.Actions(), "create", "jobs")
}

// Events drains the Events the sync emitted.
func (f *Fixture) Events() []string { return Events(f.Recorder.Events) }
