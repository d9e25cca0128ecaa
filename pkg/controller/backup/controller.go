// Package backup runs Backups: one Job per Backup that archives one PersistentVolumeClaim, with
// the Backup's phase following the Job's progress, and a cleanup Job that deletes the archive
// when the Backup is deleted.
package backup

import (
	"context"
	"fmt"
	"time"

	snapshotlisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	listers "platform.example.com/backup-operator/pkg/generated/listers/platform/v1"
)

// ControllerName names the controller in logs, events and workqueue metrics.
const ControllerName = "backup"

// Reasons of the Events a Backup's story is told with.
const (
	// EventJobCreated: the Job that runs the agent was created.
	EventJobCreated = "JobCreated"
	// EventBackupStarted: the agent's pod started reading the claim.
	EventBackupStarted = "BackupStarted"
	// EventBackupCompleted: the archive is on storage.
	EventBackupCompleted = "BackupCompleted"
	// EventBackupFailed: no archive was made; the message says why and what to do.
	EventBackupFailed = "BackupFailed"
	// EventFilesChanged: files changed while they were read; their copies may be inconsistent.
	EventFilesChanged = "FilesChanged"
	// EventStoppingJob: the Backup was deleted while its Job ran; the Job is stopped before the
	// archive is cleaned up, so that it cannot write the archive afterwards.
	EventStoppingJob = "StoppingJob"
	// EventCleanupJobCreated: the Job that deletes the archive was created.
	EventCleanupJobCreated = "CleanupJobCreated"
	// EventArchiveDeleted: the archive and its side files were deleted from storage.
	EventArchiveDeleted = "ArchiveDeleted"
	// EventArchiveRetained: deletionPolicy Retain kept the archive on storage.
	EventArchiveRetained = "ArchiveRetained"
	// EventArchiveLocked: object lock keeps the archive of a deleted Backup until a date.
	EventArchiveLocked = "ArchiveLocked"
	// EventCleanupFailed: the archive could not be deleted and was left on storage.
	EventCleanupFailed = "CleanupFailed"
	// EventStorageGone: the storage claim no longer exists, so there was nothing to delete from.
	EventStorageGone = "StorageGone"
)

// Controller syncs Backups with the Jobs that run them.
type Controller struct {
	deps     controller.Deps
	backups  listers.BackupLister
	restores listers.RestoreLister
	storages listers.BackupStorageLister
	jobs     batchlisters.JobLister
	pods     corelisters.PodLister
	claims   corelisters.PersistentVolumeClaimLister
	// snapshots is nil when the cluster does not serve the VolumeSnapshot API.
	snapshots snapshotlisters.VolumeSnapshotLister
	queue     *controller.Queue
}

// NewController registers the informers a Backup depends on and routes their events to the
// Backup they concern: a Backup's own changes, its Job's, its Job's pods', those of its cleanup
// Job, which no Backup owns and which is found by its labels, and those of the Restores reading
// its archive, which hold back its cleanup.
func NewController(deps controller.Deps) (*Controller, error) {
	backupInformer := deps.Informers.Platform().V1().Backups()
	restoreInformer := deps.Informers.Platform().V1().Restores()
	storageInformer := deps.Informers.Platform().V1().BackupStorages()
	jobInformer := deps.OwnedInformers.Batch().V1().Jobs()
	podInformer := deps.OwnedInformers.Core().V1().Pods()
	claimInformer := deps.ClaimInformers.Core().V1().PersistentVolumeClaims()

	c := &Controller{
		deps:     deps,
		backups:  backupInformer.Lister(),
		restores: restoreInformer.Lister(),
		storages: storageInformer.Lister(),
		jobs:     jobInformer.Lister(),
		pods:     podInformer.Lister(),
		claims:   claimInformer.Lister(),
	}
	synced := []cache.InformerSynced{
		restoreInformer.Informer().HasSynced,
		storageInformer.Informer().HasSynced,
		jobInformer.Informer().HasSynced,
		podInformer.Informer().HasSynced,
		claimInformer.Informer().HasSynced,
	}
	var snapshotInformer cache.SharedIndexInformer
	if deps.SnapshotInformers != nil {
		inf := deps.SnapshotInformers.Snapshot().V1().VolumeSnapshots()
		c.snapshots, snapshotInformer = inf.Lister(), inf.Informer()
		synced = append(synced, snapshotInformer.HasSynced)
	}
	c.queue = controller.NewQueue(ControllerName, c.sync, backupInformer.Informer(), synced...)

	if _, err := backupInformer.Informer().AddEventHandler(c.queue.Handler()); err != nil {
		return nil, fmt.Errorf("%s controller: watching Backups: %w", ControllerName, err)
	}
	lookup := func(namespace, name string) (types.UID, error) {
		b, err := c.backups.Backups(namespace).Get(name)
		if err != nil {
			return "", err
		}
		return b.UID, nil
	}
	if err := c.queue.WatchJobsOf(platformv1.Kind("Backup"), lookup, jobInformer, podInformer); err != nil {
		return nil, err
	}
	// A snapshot's progress and the temporary claim made from it move a Backup on.
	ownedByBackup := c.queue.OwnerHandler(controller.ControlledBy(platformv1.Kind("Backup"), lookup))
	if _, err := claimInformer.Informer().AddEventHandler(ownedByBackup); err != nil {
		return nil, fmt.Errorf("%s controller: watching temporary claims: %w", ControllerName, err)
	}
	if snapshotInformer != nil {
		if _, err := snapshotInformer.AddEventHandler(ownedByBackup); err != nil {
			return nil, fmt.Errorf("%s controller: watching VolumeSnapshots: %w", ControllerName, err)
		}
	}
	cleanupHandler := c.queue.OwnerHandler(cleanupOwner)
	if _, err := jobInformer.Informer().AddEventHandler(cleanupHandler); err != nil {
		return nil, fmt.Errorf("%s controller: watching cleanup Jobs: %w", ControllerName, err)
	}
	if _, err := podInformer.Informer().AddEventHandler(cleanupHandler); err != nil {
		return nil, fmt.Errorf("%s controller: watching cleanup pods: %w", ControllerName, err)
	}
	if _, err := restoreInformer.Informer().AddEventHandler(c.queue.OwnerHandler(restoredBackup)); err != nil {
		return nil, fmt.Errorf("%s controller: watching Restores: %w", ControllerName, err)
	}
	return c, nil
}

// restoredBackup resolves a Restore to the Backup it reads.
func restoredBackup(obj metav1.Object) (string, bool) {
	r, ok := obj.(*platformv1.Restore)
	if !ok || r.Spec.BackupName == "" {
		return "", false
	}
	return r.Namespace + "/" + r.Spec.BackupName, true
}

// cleanupOwner resolves a cleanup Job, or one of its pods, to the Backup its labels name.
func cleanupOwner(obj metav1.Object) (string, bool) {
	l := obj.GetLabels()
	if l[agentjob.LabelComponent] != agentjob.ComponentCleanup || l[platformv1.LabelBackup] == "" {
		return "", false
	}
	return obj.GetNamespace() + "/" + l[platformv1.LabelBackup], true
}

// Queue is the controller's work queue.
func (c *Controller) Queue() *controller.Queue { return c.queue }

// Run syncs Backups with workers until ctx is cancelled.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers)
}

func (c *Controller) sync(ctx context.Context, namespace, name string) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	backup, err := c.backups.Backups(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		logger.V(4).Info("Backup is gone; its Job is garbage-collected with it")
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if backup.DeletionTimestamp != nil {
		return c.finalize(ctx, backup)
	}
	if backup.Status.Phase.Final() {
		// Completed and Failed are final: the status is the record of what happened. What a
		// snapshot left is deleted here too, should the sync that ended the Backup have failed
		// to (or a restart have cut it short).
		if fromSnapshot(backup) {
			return 0, c.finishSnapshot(ctx, backup)
		}
		return 0, nil
	}
	return c.run(ctx, backup)
}
