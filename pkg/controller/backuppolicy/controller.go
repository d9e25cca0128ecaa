// Package backuppolicy runs BackupPolicies: it creates the Backups each scheduled run asks for,
// one per selected PersistentVolumeClaim, and prunes the Backups retention no longer keeps.
package backuppolicy

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

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
	// backupIndex and claimIndex are the Backup and claim caches, with the indexes of index.go.
	backupIndex cache.Indexer
	claimIndex  cache.Indexer
	queue       *controller.Queue
}

// NewController registers the informers a policy depends on. A Backup's changes go to the policy
// its label names: policies do not own their Backups, so that deleting a policy never deletes
// data, and the label is the only link.
func NewController(deps controller.Deps) (*Controller, error) {
	policyInformer := deps.Informers.Platform().V1().BackupPolicies()
	backupInformer := deps.Informers.Platform().V1().Backups()
	claimInformer := deps.ClaimInformers.Core().V1().PersistentVolumeClaims()

	if err := addIndexers(backupInformer.Informer(), claimInformer.Informer()); err != nil {
		return nil, fmt.Errorf("%s controller: %w", ControllerName, err)
	}
	c := &Controller{
		deps:        deps,
		policies:    policyInformer.Lister(),
		backupIndex: backupInformer.Informer().GetIndexer(),
		claimIndex:  claimInformer.Informer().GetIndexer(),
	}
	c.queue = controller.NewQueue(ControllerName, c.sync, policyInformer.Informer(),
		backupInformer.Informer().HasSynced,
		claimInformer.Informer().HasSynced,
	)

	if _, err := policyInformer.Informer().AddEventHandler(c.queue.Handler()); err != nil {
		return nil, fmt.Errorf("%s controller: watching BackupPolicies: %w", ControllerName, err)
	}
	if _, err := backupInformer.Informer().AddEventHandler(c.queue.OwnerHandler(policyOfBackup)); err != nil {
		return nil, fmt.Errorf("%s controller: watching Backups: %w", ControllerName, err)
	}
	// A claim that starts or stops matching a selector changes whether the policy has anything
	// to back up, which its Ready condition says.
	if _, err := claimInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueSelecting,
		UpdateFunc: func(oldObj, newObj interface{}) { c.enqueueSelecting(oldObj); c.enqueueSelecting(newObj) },
		DeleteFunc: c.enqueueSelecting,
	}); err != nil {
		return nil, fmt.Errorf("%s controller: watching PersistentVolumeClaims: %w", ControllerName, err)
	}
	return c, nil
}

// policyOfBackup resolves a Backup to the policy that created it. The spec names the policy in
// full; the label may be shortened to fit a label value.
func policyOfBackup(obj metav1.Object) (string, bool) {
	b, ok := obj.(*platformv1.Backup)
	if !ok || b.Spec.PolicyName == "" {
		return "", false
	}
	return b.Namespace + "/" + b.Spec.PolicyName, true
}

// enqueueSelecting queues the policies whose selector matches a claim's labels.
func (c *Controller) enqueueSelecting(obj interface{}) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	claim, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	policies, err := c.policies.BackupPolicies(claim.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, p := range policies {
		if sel, err := metav1.LabelSelectorAsSelector(&p.Spec.Target.PVCSelector); err == nil && sel.Matches(labels.Set(claim.Labels)) {
			c.queue.Enqueue(p)
		}
	}
}

// Queue is the controller's work queue.
func (c *Controller) Queue() *controller.Queue { return c.queue }

// Run syncs BackupPolicies with workers until ctx is cancelled.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.queue.Run(ctx, workers)
}
