// Package backupstorage proves BackupStorages usable: a short agent Job per check reads and,
// unless the storage is ReadOnly, writes where archives go, and its result becomes the storage's
// phase, Ready condition and the features it found. A storage is checked when it is created or
// its spec changes, when the check-now annotation takes a new value, and when a Backup that
// names it fails because of the storage, at most once a minute.
//
// Once a storage is Available, the controller imports what it holds (import.go): an import Job
// lists the archives of the storage's namespace, and each archive without a Backup of its name
// becomes a Completed Backup, so that a cluster pointed at a bucket can restore everything in it.
//
// The controller never reads Secrets: the agent pod gets the credentials as secretKeyRef env,
// and a Secret that does not exist shows as the pod's CreateContainerConfigError, which the
// controller reports by name. Each check Job has a deterministic name (JobName), so a restarted
// controller finds it instead of starting another. Once the status that concluded a check is in
// the cache, the controller deletes the Job; its TTL removes it if the controller is down.
package backupstorage

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller"
	listers "platform.example.com/backup-operator/pkg/generated/listers/platform/v1"
)

// ControllerName names the controller in logs, events and workqueue metrics.
const ControllerName = "backupstorage"

// Labels and annotations of this controller. Their keys are part of the API: people set
// AnnotationCheckNow, and tools select check Jobs by their labels.
const (
	// LabelBackupStorage names the BackupStorage a check Job or pod works for.
	LabelBackupStorage = "platform.example.com/backupstorage"
	// ComponentStorageCheck is the agentjob.LabelComponent value of a check Job and its pod.
	ComponentStorageCheck = "storage-check"
	// AnnotationCheckNow on a BackupStorage asks for one check for each distinct value it is
	// set to, such as after fixing the credentials Secret, which the controller cannot watch.
	AnnotationCheckNow = "platform.example.com/check-now"
	// AnnotationCheckedNow is the controller's record of the last AnnotationCheckNow value a
	// check started for; the API has no status field for it. A check Job carries the
	// AnnotationCheckNow value it was started for, so the record can be made up after a crash.
	AnnotationCheckedNow = "platform.example.com/checked-now"
)

// Reasons of the Ready condition besides the agent's own (AccessDenied, BucketNotFound,
// TLSNotTrusted, WrongRegion, EndpointUnreachable, ReadFailed, WriteFailed, …).
const (
	// ReasonAvailable: the last check proved the storage usable.
	ReasonAvailable = "Available"
	// ReasonChecking: the first check is running; nothing is known yet.
	ReasonChecking = "Checking"
	// ReasonCheckFailed: the check Job failed without saying why, such as a pod that never
	// started or ran out of time; its pod's events and logs do.
	ReasonCheckFailed = "CheckFailed"
	// ReasonCredentialsNotFound: the check's pod could not start because the credentials
	// Secret, or a key of it, does not exist.
	ReasonCredentialsNotFound = "CredentialsNotFound"
)

// Reasons of the Events a BackupStorage's story is told with.
const (
	// EventCheckStarted: a check Job was created; the message says why.
	EventCheckStarted = "CheckStarted"
	// EventStorageAvailable: a check proved the storage usable after it was not (or was not
	// known to be).
	EventStorageAvailable = "StorageAvailable"
	// EventStorageUnavailable: a check failed; the message says why and what to do.
	EventStorageUnavailable = "StorageUnavailable"
)

// Timing of checks.
const (
	// CheckDeadlineSeconds bounds a check Job: a check makes a handful of requests, so a
	// longer run is a pod that cannot start or an endpoint that does not answer.
	CheckDeadlineSeconds int64 = 120
	// CheckJobTTLSeconds lets Kubernetes delete a finished check or import Job the controller
	// did not delete itself, because it was down.
	CheckJobTTLSeconds int32 = 3600
	// RecheckInterval is the least time between the end of a check and a re-check that a
	// failed Backup asks for, so that a burst of failing Backups runs one check, not one each.
	RecheckInterval = time.Minute
	// ConfigErrorGracePeriod is how long a check's pod may fail to start for a missing Secret
	// before the check fails: the kubelet retries, and the Secret is often applied together
	// with the storage.
	ConfigErrorGracePeriod = 30 * time.Second
	// ConflictRetryInterval is how often a storage whose check Job name is taken by another
	// object's Job looks again: that Job's events do not reach this storage.
	ConflictRetryInterval = 30 * time.Second
)

// backupsByStorage indexes Backups by namespace and the BackupStorage their spec names, so that
// a check looks at the Backups of its storage only.
const backupsByStorage = "backupstorage.platform.example.com/storage"

// Controller syncs BackupStorages with the Jobs that check them.
type Controller struct {
	deps     controller.Deps
	storages listers.BackupStorageLister
	backups  cache.Indexer
	jobs     batchlisters.JobLister
	pods     corelisters.PodLister
	queue    *controller.Queue
	// logs opens the log of a container of a pod: the API server's, or a test's, since the fake
	// clientset's logs are a fixed text.
	logs func(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error)
}

// NewController registers the informers a BackupStorage depends on and routes their events to
// the storage they concern: its own changes, its check Job's and that Job's pod's, and Backups
// that name it and failed because of the storage.
func NewController(deps controller.Deps) (*Controller, error) {
	storageInformer := deps.Informers.Platform().V1().BackupStorages()
	backupInformer := deps.Informers.Platform().V1().Backups()
	jobInformer := deps.OwnedInformers.Batch().V1().Jobs()
	podInformer := deps.OwnedInformers.Core().V1().Pods()

	if err := backupInformer.Informer().AddIndexers(cache.Indexers{backupsByStorage: indexBackupByStorage}); err != nil {
		return nil, fmt.Errorf("%s controller: indexing Backups by storage: %w", ControllerName, err)
	}
	c := &Controller{
		deps:     deps,
		storages: storageInformer.Lister(),
		backups:  backupInformer.Informer().GetIndexer(),
		jobs:     jobInformer.Lister(),
		pods:     podInformer.Lister(),
		logs: func(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error) {
			// One byte past the limit tells a log that is too long from one that fits exactly.
			opts := &corev1.PodLogOptions{Container: container, LimitBytes: ptr.To[int64](MaxImportLog + 1)}
			return deps.KubeClient.CoreV1().Pods(namespace).GetLogs(pod, opts).Stream(ctx)
		},
	}
	c.queue = controller.NewQueue(ControllerName, c.sync, storageInformer.Informer(),
		backupInformer.Informer().HasSynced,
		jobInformer.Informer().HasSynced,
		podInformer.Informer().HasSynced,
	)

	if _, err := storageInformer.Informer().AddEventHandler(c.queue.Handler()); err != nil {
		return nil, fmt.Errorf("%s controller: watching BackupStorages: %w", ControllerName, err)
	}
	lookup := func(namespace, name string) (types.UID, error) {
		s, err := c.storages.BackupStorages(namespace).Get(name)
		if err != nil {
			return "", err
		}
		return s.UID, nil
	}
	if err := c.queue.WatchJobsOf(platformv1.Kind("BackupStorage"), lookup, jobInformer, podInformer); err != nil {
		return nil, err
	}
	if _, err := backupInformer.Informer().AddEventHandler(c.queue.OwnerHandler(storageOfFailedBackup)); err != nil {
		return nil, fmt.Errorf("%s controller: watching Backups: %w", ControllerName, err)
	}
	return c, nil
}

// Queue is the controller's work queue.
func (c *Controller) Queue() *controller.Queue { return c.queue }

// Run syncs BackupStorages with workers until ctx is cancelled.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers)
}

func (c *Controller) sync(ctx context.Context, namespace, name string) (time.Duration, error) {
	bs, err := c.storages.BackupStorages(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		klog.FromContext(ctx).V(4).Info("BackupStorage is gone; its check Jobs are garbage-collected with it")
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if bs.DeletionTimestamp != nil {
		return 0, nil
	}
	return c.reconcile(ctx, bs)
}

func indexBackupByStorage(obj interface{}) ([]string, error) {
	b, ok := obj.(*platformv1.Backup)
	if !ok || b.Spec.Storage == nil || b.Spec.Storage.Name == "" {
		return nil, nil
	}
	return []string{b.Namespace + "/" + b.Spec.Storage.Name}, nil
}

// storageOfFailedBackup resolves a Backup that failed because of its storage to the
// BackupStorage it names; other Backups are no news for a storage.
func storageOfFailedBackup(obj metav1.Object) (string, bool) {
	b, ok := obj.(*platformv1.Backup)
	if !ok || storageFailure(b) == nil {
		return "", false
	}
	return b.Namespace + "/" + b.Spec.Storage.Name, true
}

// storageFailure is the Succeeded condition of a Backup of a BackupStorage that failed because
// the storage is unusable, or nil.
func storageFailure(b *platformv1.Backup) *metav1.Condition {
	if b.Spec.Storage == nil || b.Spec.Storage.Name == "" {
		return nil
	}
	cond := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded)
	if cond == nil || cond.Status != metav1.ConditionFalse || !archive.IsStorageReason(archive.Reason(cond.Reason)) {
		return nil
	}
	return cond
}
