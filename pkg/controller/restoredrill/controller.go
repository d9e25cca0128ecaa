// Package restoredrill runs RestoreDrills: on a schedule, it restores the newest Completed Backup
// of each claim of a policy into a scratch claim, runs a probe on the restored copy, holds the
// result to the drill's objectives, records the verdict on the drill and on the Backup, and
// deletes what the run made.
package restoredrill

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
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	listers "platform.example.com/backup-operator/pkg/generated/listers/platform/v1"
)

// ControllerName names the controller in logs, events and workqueue metrics.
const ControllerName = "restoredrill"

// Reasons of the Events that tell a drill's story, and of its Ready condition.
const (
	// EventDrillStarted: a run started; the message names the Backups it restores.
	EventDrillStarted = "DrillStarted"
	// EventDrillSucceeded: every claim restored, verified and passed its probe within the
	// objectives; the message gives the figures.
	EventDrillSucceeded = "DrillSucceeded"
	// EventDrillFailed: a claim failed its drill; the message says which step and what to do.
	EventDrillFailed = "DrillFailed"
	// EventRTOExceeded: a claim was restored, but later than maxTimeToRestore.
	EventRTOExceeded = "RTOExceeded"
	// EventScratchCleanupFailed: a scratch claim or probe Job could not be deleted; it is tried
	// again.
	EventScratchCleanupFailed = "ScratchCleanupFailed"
	// EventMissedSchedule: a scheduled run could not start within startingDeadlineSeconds.
	EventMissedSchedule = "MissedSchedule"

	// ReasonScheduled: the drill is valid and runs are scheduled (Ready True).
	ReasonScheduled = "Scheduled"
	// ReasonSuspended: spec.suspend is true (Ready False).
	ReasonSuspended = "Suspended"
	// ReasonInvalidSchedule: the schedule does not parse (Ready False).
	ReasonInvalidSchedule = "InvalidSchedule"
	// ReasonInvalidTimeZone: the time zone is unknown (Ready False).
	ReasonInvalidTimeZone = "InvalidTimeZone"
)

// ComponentProbe is the app.kubernetes.io/component of a drill's probe Jobs and pods.
const ComponentProbe = "drill-probe"

// Controller syncs RestoreDrills with the Restores, scratch claims and probe Jobs of their runs.
type Controller struct {
	deps     controller.Deps
	drills   listers.RestoreDrillLister
	policies listers.BackupPolicyLister
	backups  listers.BackupLister
	restores listers.RestoreLister
	jobs     batchlisters.JobLister
	pods     corelisters.PodLister
	claims   corelisters.PersistentVolumeClaimLister
	// written keeps a sync from acting on a drill whose status it has just replaced.
	written agentjob.Written
	queue   *controller.Queue
}

// NewController registers the informers a drill depends on and routes their events to the drill
// they concern: its own changes, and those of the Restores, scratch claims, probe Jobs and probe
// pods it controls.
func NewController(deps controller.Deps) (*Controller, error) {
	drillInformer := deps.Informers.Platform().V1().RestoreDrills()
	policyInformer := deps.Informers.Platform().V1().BackupPolicies()
	backupInformer := deps.Informers.Platform().V1().Backups()
	restoreInformer := deps.Informers.Platform().V1().Restores()
	jobInformer := deps.OwnedInformers.Batch().V1().Jobs()
	podInformer := deps.OwnedInformers.Core().V1().Pods()
	claimInformer := deps.ClaimInformers.Core().V1().PersistentVolumeClaims()

	c := &Controller{
		deps:     deps,
		drills:   drillInformer.Lister(),
		policies: policyInformer.Lister(),
		backups:  backupInformer.Lister(),
		restores: restoreInformer.Lister(),
		jobs:     jobInformer.Lister(),
		pods:     podInformer.Lister(),
		claims:   claimInformer.Lister(),
	}
	c.queue = controller.NewQueue(ControllerName, c.sync, drillInformer.Informer(),
		policyInformer.Informer().HasSynced,
		backupInformer.Informer().HasSynced,
		restoreInformer.Informer().HasSynced,
		jobInformer.Informer().HasSynced,
		podInformer.Informer().HasSynced,
		claimInformer.Informer().HasSynced,
	)
	if _, err := drillInformer.Informer().AddEventHandler(c.queue.Handler()); err != nil {
		return nil, fmt.Errorf("%s controller: watching RestoreDrills: %w", ControllerName, err)
	}
	lookup := func(namespace, name string) (types.UID, error) {
		d, err := c.drills.RestoreDrills(namespace).Get(name)
		if err != nil {
			return "", err
		}
		return d.UID, nil
	}
	kind := platformv1.Kind("RestoreDrill")
	owned := c.queue.OwnerHandler(controller.ControlledBy(kind, lookup))
	if _, err := restoreInformer.Informer().AddEventHandler(owned); err != nil {
		return nil, fmt.Errorf("%s controller: watching Restores: %w", ControllerName, err)
	}
	if _, err := claimInformer.Informer().AddEventHandler(owned); err != nil {
		return nil, fmt.Errorf("%s controller: watching PersistentVolumeClaims: %w", ControllerName, err)
	}
	if err := c.queue.WatchJobsOf(kind, lookup, jobInformer, podInformer); err != nil {
		return nil, err
	}
	return c, nil
}

// Queue is the controller's work queue.
func (c *Controller) Queue() *controller.Queue { return c.queue }

// Run syncs RestoreDrills with workers until ctx is cancelled.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers)
}

func (c *Controller) sync(ctx context.Context, namespace, name string) (time.Duration, error) {
	drill, err := c.drills.RestoreDrills(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		klog.FromContext(ctx).V(4).Info("RestoreDrill is gone; its Restores, scratch claims and probe Jobs are garbage-collected with it")
		c.deps.Metrics.ForgetDrill(namespace, name)
		c.written.Forget(namespace, name)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if drill.DeletionTimestamp != nil {
		return 0, nil
	}
	return c.reconcile(ctx, drill)
}
