// Package restore runs Restores: checks that a restore is safe, then one Job per Restore that
// verifies a Completed Backup's archive and writes it into the target PersistentVolumeClaim.
package restore

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	listers "platform.example.com/backup-operator/pkg/generated/listers/platform/v1"
)

// ControllerName names the controller in logs, events and workqueue metrics.
const ControllerName = "restore"

// Reasons of the Events a Restore's story is told with.
const (
	// EventClaimCreated: the target claim did not exist and was created from the template.
	EventClaimCreated = "ClaimCreated"
	// EventJobCreated: the Job that runs the agent was created.
	EventJobCreated = "JobCreated"
	// EventRestoreStarted: the agent's pod started verifying the archive.
	EventRestoreStarted = "RestoreStarted"
	// EventRestoreCompleted: the archive's content is in the target claim.
	EventRestoreCompleted = "RestoreCompleted"
	// EventRestoreFailed: the restore was refused or failed; the message says whether the target
	// was touched and what to do.
	EventRestoreFailed = "RestoreFailed"
	// EventOwnershipNotRestored: some entries kept the agent's ownership instead of the archived
	// one.
	EventOwnershipNotRestored = "OwnershipNotRestored"
)

// Controller syncs Restores with the Jobs that run them.
type Controller struct {
	deps     controller.Deps
	restores listers.RestoreLister
	backups  listers.BackupLister
	storages listers.BackupStorageLister
	jobs     batchlisters.JobLister
	pods     corelisters.PodLister
	claims   corelisters.PersistentVolumeClaimLister
	queue    *controller.Queue
}

// NewController registers the informers a Restore depends on and routes their events to the
// Restore they concern: a Restore's own changes, its Job's, and its Job's pods'.
func NewController(deps controller.Deps) (*Controller, error) {
	restoreInformer := deps.Informers.Platform().V1().Restores()
	backupInformer := deps.Informers.Platform().V1().Backups()
	storageInformer := deps.Informers.Platform().V1().BackupStorages()
	jobInformer := deps.OwnedInformers.Batch().V1().Jobs()
	podInformer := deps.OwnedInformers.Core().V1().Pods()
	claimInformer := deps.ClaimInformers.Core().V1().PersistentVolumeClaims()

	c := &Controller{
		deps:     deps,
		restores: restoreInformer.Lister(),
		backups:  backupInformer.Lister(),
		storages: storageInformer.Lister(),
		jobs:     jobInformer.Lister(),
		pods:     podInformer.Lister(),
		claims:   claimInformer.Lister(),
	}
	c.queue = controller.NewQueue(ControllerName, c.sync, restoreInformer.Informer(),
		backupInformer.Informer().HasSynced,
		storageInformer.Informer().HasSynced,
		jobInformer.Informer().HasSynced,
		podInformer.Informer().HasSynced,
		claimInformer.Informer().HasSynced,
	)

	if _, err := restoreInformer.Informer().AddEventHandler(c.queue.Handler()); err != nil {
		return nil, fmt.Errorf("%s controller: watching Restores: %w", ControllerName, err)
	}
	lookup := func(namespace, name string) (types.UID, error) {
		r, err := c.restores.Restores(namespace).Get(name)
		if err != nil {
			return "", err
		}
		return r.UID, nil
	}
	if err := c.queue.WatchJobsOf(platformv1.Kind("Restore"), lookup, jobInformer, podInformer); err != nil {
		return nil, err
	}
	return c, nil
}

// Queue is the controller's work queue.
func (c *Controller) Queue() *controller.Queue { return c.queue }

// Run syncs Restores with workers until ctx is cancelled.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers)
}

func (c *Controller) sync(ctx context.Context, namespace, name string) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	restore, err := c.restores.Restores(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		logger.V(4).Info("Restore is gone; its Job is garbage-collected with it")
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if restore.DeletionTimestamp != nil || restore.Status.Phase.Final() {
		// Completed and Failed are final: the status is the record of what happened.
		return 0, nil
	}
	return c.run(ctx, restore)
}
