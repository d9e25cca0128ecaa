// Package backuppolicy runs BackupPolicies: it creates the Backups each scheduled run asks for,
// one per selected PersistentVolumeClaim, and prunes the Backups retention no longer keeps.
package backuppolicy

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	listers "platform.example.com/backup-operator/pkg/generated/listers/platform/v1"
)

// ControllerName names the controller in logs, events and workqueue metrics.
const ControllerName = "backuppolicy"

// Controller syncs BackupPolicies with the Backups their runs create.
type Controller struct {
	deps     controller.Deps
	policies listers.BackupPolicyLister
	backups  listers.BackupLister
	claims   corelisters.PersistentVolumeClaimLister
	queue    *controller.Queue
}

// NewController registers the informers a policy depends on. A Backup's changes go to the policy
// its label names: policies do not own their Backups, so that deleting a policy never deletes
// data, and the label is the only link.
func NewController(deps controller.Deps) (*Controller, error) {
	policyInformer := deps.Informers.Platform().V1().BackupPolicies()
	backupInformer := deps.Informers.Platform().V1().Backups()
	claimInformer := deps.ClaimInformers.Core().V1().PersistentVolumeClaims()

	c := &Controller{
		deps:     deps,
		policies: policyInformer.Lister(),
		backups:  backupInformer.Lister(),
		claims:   claimInformer.Lister(),
	}
	c.queue = controller.NewQueue(ControllerName, c.sync,
		policyInformer.Informer().HasSynced,
		backupInformer.Informer().HasSynced,
		claimInformer.Informer().HasSynced,
	)

	if _, err := policyInformer.Informer().AddEventHandler(c.queue.Handler()); err != nil {
		return nil, fmt.Errorf("%s controller: watching BackupPolicies: %w", ControllerName, err)
	}
	if _, err := backupInformer.Informer().AddEventHandler(c.queue.OwnerHandler(policyOfBackup)); err != nil {
		return nil, fmt.Errorf("%s controller: watching Backups: %w", ControllerName, err)
	}
	return c, nil
}

// policyOfBackup resolves a Backup to the policy its label names.
func policyOfBackup(obj metav1.Object) (string, bool) {
	policy := obj.GetLabels()[platformv1.LabelPolicy]
	if policy == "" {
		return "", false
	}
	return obj.GetNamespace() + "/" + policy, true
}

// Queue is the controller's work queue.
func (c *Controller) Queue() *controller.Queue { return c.queue }

// Run syncs BackupPolicies with workers until ctx is cancelled.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers)
}

func (c *Controller) sync(ctx context.Context, namespace, name string) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	policy, err := c.policies.BackupPolicies(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		logger.V(4).Info("BackupPolicy is gone; its Backups stay")
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	logger.V(4).Info("Observed BackupPolicy", "schedule", policy.Spec.Schedule, "generation", policy.Generation)
	return 0, nil
}
