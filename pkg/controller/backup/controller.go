// Package backup runs Backups: one Job per Backup that archives one PersistentVolumeClaim, with
// the Backup's phase following the Job's progress.
package backup

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
const ControllerName = "backup"

// Controller syncs Backups with the Jobs that run them.
type Controller struct {
	deps    controller.Deps
	backups listers.BackupLister
	jobs    batchlisters.JobLister
	pods    corelisters.PodLister
	claims  corelisters.PersistentVolumeClaimLister
	queue   *controller.Queue
}

// NewController registers the informers a Backup depends on and routes their events to the
// Backup they concern: a Backup's own changes, its Job's, and its Job's pods'.
func NewController(deps controller.Deps) (*Controller, error) {
	backupInformer := deps.Informers.Platform().V1().Backups()
	jobInformer := deps.OwnedInformers.Batch().V1().Jobs()
	podInformer := deps.OwnedInformers.Core().V1().Pods()
	claimInformer := deps.ClaimInformers.Core().V1().PersistentVolumeClaims()

	c := &Controller{
		deps:    deps,
		backups: backupInformer.Lister(),
		jobs:    jobInformer.Lister(),
		pods:    podInformer.Lister(),
		claims:  claimInformer.Lister(),
	}
	c.queue = controller.NewQueue(ControllerName, c.sync,
		backupInformer.Informer().HasSynced,
		jobInformer.Informer().HasSynced,
		podInformer.Informer().HasSynced,
		claimInformer.Informer().HasSynced,
	)

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
	return c, nil
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
	logger.V(4).Info("Observed Backup", "phase", backup.Status.Phase, "generation", backup.Generation)
	return 0, nil
}
