package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/names"
)

// ComponentSnapshot labels the VolumeSnapshot and the temporary claim of a Backup with
// copyMethod Snapshot, so that they can be found, and cleaned up, by label.
const ComponentSnapshot = "backup-snapshot"

// AnnotationDefaultSnapshotClass marks the VolumeSnapshotClass that snapshots of its driver's
// volumes get when they name none.
const AnnotationDefaultSnapshotClass = "snapshot.storage.kubernetes.io/is-default-class"

// Reasons of the Events of a Backup's snapshot.
const (
	// EventSnapshotCreated: the VolumeSnapshot of the claim was asked for.
	EventSnapshotCreated = "SnapshotCreated"
	// EventSnapshotReady: the snapshot is ready to use; the archive is read from it.
	EventSnapshotReady = "SnapshotReady"
	// EventSnapshotContentRetained: the snapshot's class keeps its content after the snapshot is
	// deleted (deletionPolicy Retain), which leaves data on the storage system.
	EventSnapshotContentRetained = "SnapshotContentRetained"
	// EventSnapshotDeleted: the snapshot and the temporary claim were deleted after the backup.
	EventSnapshotDeleted = "SnapshotDeleted"
)

// SnapshotName is the name of backup's VolumeSnapshot, and of the temporary claim made from it:
// a function of the Backup alone, like its Job's.
func SnapshotName(backup *platformv1.Backup) string { return names.Join("backup", backup.Name) }

// snapshotLabels mark the snapshot and the temporary claim of backup, a backup of claim.
func snapshotLabels(b *platformv1.Backup) map[string]string {
	return map[string]string{
		platformv1.LabelManagedBy: platformv1.ManagedByValue,
		platformv1.LabelBackup:    b.Name,
		platformv1.LabelPVC:       b.Spec.PVCName,
		agentjob.LabelComponent:   ComponentSnapshot,
	}
}

func snapshotSelector(b *platformv1.Backup) labels.Selector {
	return labels.SelectorFromSet(labels.Set{platformv1.LabelBackup: b.Name, agentjob.LabelComponent: ComponentSnapshot})
}

// fromSnapshot reports whether b reads a snapshot, or made one: a copyMethod Snapshot Backup
// may have cut its snapshot in a sync whose status write failed.
func fromSnapshot(b *platformv1.Backup) bool {
	return b.Status.Snapshot != nil || platformv1.CopyMethodOf(b.Spec.BackupRunSettings) == platformv1.CopyMethodSnapshot
}

// snapshotSource advances the snapshot of b, a backup of claim, by one step: it cuts the
// VolumeSnapshot, waits for it to be ready to use, and then makes the temporary claim the agent
// reads. It returns that claim once it exists; until then, when to look again (the snapshot's
// changes wake the controller sooner). A failure is recorded in b's status, with a nil claim.
func (c *Controller) snapshotSource(ctx context.Context, b *platformv1.Backup, claim *corev1.PersistentVolumeClaim, events *[]agentjob.Event) (*corev1.PersistentVolumeClaim, time.Duration, error) {
	if c.deps.SnapshotClient == nil {
		c.failSnapshot(b, platformv1.ReasonSnapshotAPIMissing, fmt.Sprintf("The cluster does not serve the %s API, so PersistentVolumeClaim %s cannot be snapshotted: install the VolumeSnapshot CRDs and the snapshot-controller (github.com/kubernetes-csi/external-snapshotter) and a CSI driver that can snapshot, restart the operator, then create a new Backup; or back up with copyMethod Direct.",
			snapshotv1.SchemeGroupVersion, claim.Name), events)
		return nil, 0, nil
	}
	now := c.deps.Clock.Now()
	name := SnapshotName(b)
	snap, err := c.getSnapshot(ctx, b, name)
	if err != nil {
		return nil, 0, err
	}
	if snap == nil {
		if b.Status.Snapshot != nil && b.Status.Snapshot.CreationTime != nil {
			c.failSnapshot(b, platformv1.ReasonSnapshotFailed, fmt.Sprintf("VolumeSnapshot %s was deleted before the archive was read from it: create a new Backup.", name), events)
			return nil, 0, nil
		}
		return nil, deadlineLeft(b, now), c.createSnapshot(ctx, b, claim, events)
	}
	if !agentjob.IsControlledBy(snap, string(b.UID)) {
		c.failSnapshot(b, platformv1.ReasonObjectConflict, fmt.Sprintf("VolumeSnapshot %s exists and does not belong to this Backup, so it was left alone: delete or rename it, or create a Backup with another name.", name), events)
		return nil, 0, nil
	}
	if b.Status.Snapshot == nil {
		// Cut by a sync whose status write failed.
		b.Status.Snapshot = &platformv1.SnapshotStatus{Name: name, ClassName: ptr.Deref(snap.Spec.VolumeSnapshotClassName, "")}
		if !snap.CreationTimestamp.IsZero() {
			b.Status.Snapshot.CreationTime = snap.CreationTimestamp.DeepCopy()
		}
	}
	if status := snap.Status; status != nil && status.Error != nil && ptr.Deref(status.Error.Message, "") != "" {
		c.failSnapshot(b, platformv1.ReasonSnapshotFailed, fmt.Sprintf("VolumeSnapshot %s of PersistentVolumeClaim %s failed: %s. Check the CSI driver and the snapshot's class, then create a new Backup.",
			name, claim.Name, strings.TrimSuffix(*status.Error.Message, ".")), events)
		return nil, 0, nil
	}
	if snap.Status == nil || !ptr.Deref(snap.Status.ReadyToUse, false) {
		left := deadlineLeft(b, now)
		if left <= 0 {
			c.failSnapshot(b, platformv1.ReasonSnapshotFailed, fmt.Sprintf("VolumeSnapshot %s of PersistentVolumeClaim %s was not ready to use within activeDeadlineSeconds (%s): check the CSI driver's snapshotter, then create a new Backup.",
				name, claim.Name, activeDeadline(b)), events)
			return nil, 0, nil
		}
		b.Status.Phase = platformv1.BackupPending
		if !meta.IsStatusConditionPresentAndEqual(b.Status.Conditions, platformv1.ConditionSnapshotReady, metav1.ConditionUnknown) {
			// Adopted from a sync whose status write failed; otherwise the creation said so.
			msg := fmt.Sprintf("Waiting for VolumeSnapshot %s of PersistentVolumeClaim %s to be ready to use.", name, claim.Name)
			agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionSnapshotReady, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending, msg, b.Generation, now)
			agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending, msg, b.Generation, now)
		}
		return nil, left, nil
	}

	st := b.Status.Snapshot
	if st.ReadyTime == nil {
		st.ReadyTime = &metav1.Time{Time: now}
		if st.CreationTime != nil {
			st.SnapshotDuration = &metav1.Duration{Duration: now.Sub(st.CreationTime.Time).Round(time.Millisecond)}
		}
		if rs := snap.Status.RestoreSize; rs != nil {
			st.RestoreSize = ptr.To(rs.DeepCopy())
		}
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventSnapshotReady,
			Message: fmt.Sprintf("VolumeSnapshot %s is ready to use after %s%s; reading it through claim %s", name, durationOf(st.SnapshotDuration), sizeOf(st.RestoreSize), name)})
	}
	agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionSnapshotReady, metav1.ConditionTrue, platformv1.ReasonSnapshotReady,
		fmt.Sprintf("VolumeSnapshot %s of PersistentVolumeClaim %s is ready to use.", name, claim.Name), b.Generation, now)
	tmp, err := c.temporaryClaim(ctx, b, claim, snap, events)
	return tmp, 0, err
}

// getSnapshot returns b's VolumeSnapshot called name, or nil when there is none. When b's status
// says it was created, a miss in the cache is checked with the API server: the cache may not
// have seen the create yet.
func (c *Controller) getSnapshot(ctx context.Context, b *platformv1.Backup, name string) (*snapshotv1.VolumeSnapshot, error) {
	snap, err := c.snapshots.VolumeSnapshots(b.Namespace).Get(name)
	if err == nil {
		return snap, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	if b.Status.Snapshot == nil {
		return nil, nil
	}
	snap, err = c.deps.SnapshotClient.SnapshotV1().VolumeSnapshots(b.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading VolumeSnapshot %s/%s: %w", b.Namespace, name, err)
	}
	return snap, nil
}

// createSnapshot cuts the VolumeSnapshot of claim with the class b names, or the default class
// of the claim's CSI driver.
func (c *Controller) createSnapshot(ctx context.Context, b *platformv1.Backup, claim *corev1.PersistentVolumeClaim, events *[]agentjob.Event) error {
	class, err := c.snapshotClass(ctx, b, claim, events)
	if class == nil || err != nil {
		return err
	}
	now := c.deps.Clock.Now()
	name := SnapshotName(b)
	snap := &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       b.Namespace,
			Labels:          snapshotLabels(b),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(b, platformv1.SchemeGroupVersion.WithKind("Backup"))},
		},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(claim.Name)},
			VolumeSnapshotClassName: ptr.To(class.Name),
		},
	}
	_, err = c.deps.SnapshotClient.SnapshotV1().VolumeSnapshots(b.Namespace).Create(ctx, snap, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Made by an earlier sync that the cache has not seen yet: the next sync checks its owner.
		return fmt.Errorf("VolumeSnapshot %s/%s exists but is not in the cache yet; retrying", b.Namespace, name)
	}
	if err != nil {
		return fmt.Errorf("creating VolumeSnapshot %s/%s: %w", b.Namespace, name, err)
	}
	klog.FromContext(ctx).V(2).Info("Created VolumeSnapshot", "snapshot", klog.KRef(b.Namespace, name), "class", class.Name)
	b.Status.Phase = platformv1.BackupPending
	b.Status.Snapshot = &platformv1.SnapshotStatus{Name: name, ClassName: class.Name, CreationTime: &metav1.Time{Time: now}}
	msg := fmt.Sprintf("Cutting VolumeSnapshot %s of PersistentVolumeClaim %s with class %s.", name, claim.Name, class.Name)
	agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionSnapshotReady, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending, msg, b.Generation, now)
	agentjob.SetSucceeded(&b.Status.Conditions, metav1.ConditionUnknown, platformv1.ReasonSnapshotPending, msg, b.Generation, now)
	*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventSnapshotCreated,
		Message: fmt.Sprintf("Created VolumeSnapshot %s of PersistentVolumeClaim %s with class %s", name, claim.Name, class.Name)})
	if class.DeletionPolicy == snapshotv1.VolumeSnapshotContentRetain {
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventSnapshotContentRetained,
			Message: fmt.Sprintf("VolumeSnapshotClass %s has deletionPolicy Retain: deleting VolumeSnapshot %s after the backup leaves its VolumeSnapshotContent and the storage system's snapshot behind. Delete them by hand, or use a class with deletionPolicy Delete.", class.Name, name)})
	}
	return nil
}

// snapshotClass returns the VolumeSnapshotClass for a snapshot of claim: the one b names, or
// the default class of the claim's CSI driver. A class that does not fit is recorded as b's
// failure, with a nil class.
func (c *Controller) snapshotClass(ctx context.Context, b *platformv1.Backup, claim *corev1.PersistentVolumeClaim, events *[]agentjob.Event) (*snapshotv1.VolumeSnapshotClass, error) {
	driver, err := c.csiDriver(ctx, claim)
	if err != nil {
		return nil, err
	}
	if driver == "" {
		c.failSnapshot(b, platformv1.ReasonSnapshotClassNotFound, fmt.Sprintf("PersistentVolumeClaim %s is not on a CSI volume (its PersistentVolume %s has no spec.csi), so it cannot be snapshotted: back it up with copyMethod Direct in a new Backup.", claim.Name, claim.Spec.VolumeName), events)
		return nil, nil
	}
	classes := c.deps.SnapshotClient.SnapshotV1().VolumeSnapshotClasses()
	if name := b.Spec.Source.VolumeSnapshotClassName; name != "" {
		class, err := classes.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			c.failSnapshot(b, platformv1.ReasonSnapshotClassNotFound, fmt.Sprintf("VolumeSnapshotClass %s does not exist: create it for CSI driver %s, or name another in spec.source.volumeSnapshotClassName of a new Backup.", name, driver), events)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading VolumeSnapshotClass %s: %w", name, err)
		}
		if class.Driver != driver {
			c.failSnapshot(b, platformv1.ReasonSnapshotClassNotFound, fmt.Sprintf("VolumeSnapshotClass %s is for CSI driver %s, but PersistentVolumeClaim %s is on %s: name a class of %s in a new Backup.", name, class.Driver, claim.Name, driver, driver), events)
			return nil, nil
		}
		return class, nil
	}
	list, err := classes.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing VolumeSnapshotClasses: %w", err)
	}
	var defaults []*snapshotv1.VolumeSnapshotClass
	for i := range list.Items {
		if cl := &list.Items[i]; cl.Driver == driver && cl.Annotations[AnnotationDefaultSnapshotClass] == "true" {
			defaults = append(defaults, cl)
		}
	}
	switch len(defaults) {
	case 1:
		return defaults[0], nil
	case 0:
		c.failSnapshot(b, platformv1.ReasonSnapshotClassNotFound, fmt.Sprintf("No VolumeSnapshotClass is the default for CSI driver %s, the driver of PersistentVolumeClaim %s: create one with the annotation %s: \"true\", or name a class in spec.source.volumeSnapshotClassName of a new Backup.", driver, claim.Name, AnnotationDefaultSnapshotClass), events)
	default:
		found := make([]string, len(defaults))
		for i, cl := range defaults {
			found[i] = cl.Name
		}
		slices.Sort(found)
		c.failSnapshot(b, platformv1.ReasonSnapshotClassNotFound, fmt.Sprintf("VolumeSnapshotClasses %s are all marked default for CSI driver %s: mark one only, or name one in spec.source.volumeSnapshotClassName of a new Backup.", strings.Join(found, ", "), driver), events)
	}
	return nil, nil
}

// csiDriver is the CSI driver of claim's volume, or "" when the volume is not a CSI one.
func (c *Controller) csiDriver(ctx context.Context, claim *corev1.PersistentVolumeClaim) (string, error) {
	pv, err := c.deps.KubeClient.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading PersistentVolume %s of claim %s/%s: %w", claim.Spec.VolumeName, claim.Namespace, claim.Name, err)
	}
	if pv.Spec.CSI == nil {
		return "", nil
	}
	return pv.Spec.CSI.Driver, nil
}

// temporaryClaim returns the claim made from snap that the agent reads, creating it like claim
// (class, access modes, volume mode) with the snapshot's restoreSize.
func (c *Controller) temporaryClaim(ctx context.Context, b *platformv1.Backup, claim *corev1.PersistentVolumeClaim, snap *snapshotv1.VolumeSnapshot, events *[]agentjob.Event) (*corev1.PersistentVolumeClaim, error) {
	name := SnapshotName(b)
	tmp, err := c.claims.PersistentVolumeClaims(b.Namespace).Get(name)
	if apierrors.IsNotFound(err) {
		tmp, err = c.createTemporaryClaim(ctx, b, claim, snap)
	}
	if err != nil {
		return nil, err
	}
	if !agentjob.IsControlledBy(tmp, string(b.UID)) {
		c.failSnapshot(b, platformv1.ReasonObjectConflict, fmt.Sprintf("PersistentVolumeClaim %s exists and does not belong to this Backup, so the snapshot cannot be read through it: delete or rename it, or create a Backup with another name.", name), events)
		return nil, nil
	}
	b.Status.Snapshot.TemporaryClaimName = name
	return tmp, nil
}

func (c *Controller) createTemporaryClaim(ctx context.Context, b *platformv1.Backup, claim *corev1.PersistentVolumeClaim, snap *snapshotv1.VolumeSnapshot) (*corev1.PersistentVolumeClaim, error) {
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if rs := snap.Status.RestoreSize; rs != nil && !rs.IsZero() {
		// The volume must hold the snapshot; some drivers refuse a larger one, none a equal one.
		size = rs.DeepCopy()
	}
	tmp := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:            SnapshotName(b),
			Namespace:       b.Namespace,
			Labels:          snapshotLabels(b),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(b, platformv1.SchemeGroupVersion.WithKind("Backup"))},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      slices.Clone(claim.Spec.AccessModes),
			StorageClassName: claim.Spec.StorageClassName,
			VolumeMode:       claim.Spec.VolumeMode,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			DataSource: &corev1.TypedLocalObjectReference{
				APIGroup: ptr.To(snapshotv1.GroupName),
				Kind:     "VolumeSnapshot",
				Name:     snap.Name,
			},
		},
	}
	made, err := c.deps.KubeClient.CoreV1().PersistentVolumeClaims(b.Namespace).Create(ctx, tmp, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		made, err = c.deps.KubeClient.CoreV1().PersistentVolumeClaims(b.Namespace).Get(ctx, tmp.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("creating PersistentVolumeClaim %s/%s from VolumeSnapshot %s: %w", b.Namespace, tmp.Name, snap.Name, err)
	}
	return made, nil
}

// releaseSnapshot deletes what b's snapshot left: the temporary claim, and the VolumeSnapshot
// unless it is kept (keep). Both are found by label and deleted only when b controls them, so it
// is safe to call on every sync, after a restart too; it reports what it deleted.
func (c *Controller) releaseSnapshot(ctx context.Context, b *platformv1.Backup, keep bool) ([]string, error) {
	claims, err := c.claims.PersistentVolumeClaims(b.Namespace).List(snapshotSelector(b))
	if err != nil {
		return nil, err
	}
	deleted, err := deleteControlled(ctx, b, "PersistentVolumeClaim", claims, c.deps.KubeClient.CoreV1().PersistentVolumeClaims(b.Namespace).Delete)
	if err != nil || keep || c.snapshots == nil {
		return deleted, err
	}
	snaps, err := c.snapshots.VolumeSnapshots(b.Namespace).List(snapshotSelector(b))
	if err != nil {
		return deleted, err
	}
	more, err := deleteControlled(ctx, b, "VolumeSnapshot", snaps, c.deps.SnapshotClient.SnapshotV1().VolumeSnapshots(b.Namespace).Delete)
	return append(deleted, more...), err
}

// deleteControlled deletes those of objs, of kind, that b controls and that are not being
// deleted yet, each with a precondition on its UID, and says which as "kind name".
func deleteControlled[T metav1.Object](ctx context.Context, b *platformv1.Backup, kind string, objs []T, del func(context.Context, string, metav1.DeleteOptions) error) ([]string, error) {
	var deleted []string
	for _, o := range objs {
		if o.GetDeletionTimestamp() != nil || !agentjob.IsControlledBy(o, string(b.UID)) {
			continue
		}
		uid := o.GetUID()
		if err := del(ctx, o.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
			return deleted, fmt.Errorf("deleting %s %s/%s: %w", kind, b.Namespace, o.GetName(), err)
		}
		deleted = append(deleted, kind+" "+o.GetName())
	}
	return deleted, nil
}

// finishSnapshot cleans up after a Backup with copyMethod Snapshot that has ended: it deletes its
// finished Job, the temporary claim and, unless keepSnapshot kept a Completed Backup's, the
// snapshot.
func (c *Controller) finishSnapshot(ctx context.Context, b *platformv1.Backup) error {
	var jobs []*batchv1.Job
	if job, err := c.jobs.Jobs(b.Namespace).Get(JobName(b)); err == nil {
		jobs = append(jobs, job)
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	// A finished pod still counts as a user of the claims it mounts, so the temporary claim
	// would stay Terminating for as long as its Job kept the pod: the Job goes first. The
	// Backup's status holds all the Job told.
	deleted, err := deleteControlled(ctx, b, "Job", jobs, func(ctx context.Context, name string, opts metav1.DeleteOptions) error {
		opts.PropagationPolicy = ptr.To(metav1.DeletePropagationBackground)
		return c.deps.KubeClient.BatchV1().Jobs(b.Namespace).Delete(ctx, name, opts)
	})
	if err != nil {
		return err
	}
	return c.dropSnapshot(ctx, b, c.keepsSnapshot(b), "after the backup", deleted...)
}

// dropSnapshot is releaseSnapshot with an Event that tells what was deleted (after what was
// deleted before it), and when.
func (c *Controller) dropSnapshot(ctx context.Context, b *platformv1.Backup, keep bool, when string, before ...string) error {
	deleted, err := c.releaseSnapshot(ctx, b, keep)
	deleted = append(before, deleted...)
	if len(deleted) > 0 {
		c.deps.Recorder.Eventf(b, corev1.EventTypeNormal, EventSnapshotDeleted, "Deleted %s %s", strings.Join(deleted, " and "), when)
	}
	return err
}

// keepsSnapshot reports whether b's snapshot stays after b ended: keepSnapshot, on a Completed
// Backup.
func (c *Controller) keepsSnapshot(b *platformv1.Backup) bool {
	return b.Spec.Source != nil && b.Spec.Source.KeepSnapshot && b.Status.Phase == platformv1.BackupCompleted
}

// failSnapshot fails b before its Job exists, with the SnapshotReady condition False.
func (c *Controller) failSnapshot(b *platformv1.Backup, reason, message string, events *[]agentjob.Event) {
	agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionSnapshotReady, metav1.ConditionFalse, reason, message, b.Generation, c.deps.Clock.Now())
	c.fail(b, reason, message, events)
}

// uploadCondition mirrors the Succeeded condition of a Backup whose snapshot is ready into
// DataUploaded: from then on, the run is the agent's read of the snapshot.
func uploadCondition(b *platformv1.Backup, now time.Time) {
	ready := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSnapshotReady)
	succeeded := meta.FindStatusCondition(b.Status.Conditions, platformv1.ConditionSucceeded)
	if ready == nil || ready.Status != metav1.ConditionTrue || succeeded == nil {
		return
	}
	agentjob.SetCondition(&b.Status.Conditions, platformv1.ConditionDataUploaded, succeeded.Status, succeeded.Reason, succeeded.Message, b.Generation, now)
}

// activeDeadline bounds a Backup from its creation: a snapshot that is not ready by then fails
// it, as a Job past it would.
func activeDeadline(b *platformv1.Backup) time.Duration {
	return time.Duration(ptr.Deref(b.Spec.ActiveDeadlineSeconds, platformv1.DefaultActiveDeadlineSeconds)) * time.Second
}

// deadlineLeft is how long b has left before its activeDeadlineSeconds, counted from its creation.
func deadlineLeft(b *platformv1.Backup, now time.Time) time.Duration {
	if b.CreationTimestamp.IsZero() {
		return activeDeadline(b)
	}
	return b.CreationTimestamp.Add(activeDeadline(b)).Sub(now)
}

func durationOf(d *metav1.Duration) string {
	if d == nil {
		return "an unknown time"
	}
	return d.Duration.String()
}

func sizeOf(q *resource.Quantity) string {
	if q == nil || q.IsZero() {
		return ""
	}
	return fmt.Sprintf(" (restoreSize %s)", agentjob.HumanBytes(q.Value()))
}
