package backupstorage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
	"platform.example.com/backup-operator/pkg/names"
	"platform.example.com/backup-operator/pkg/storage"
	"platform.example.com/backup-operator/pkg/storage/s3"
)

// An import lists the archives of the storage's namespace and makes a Completed Backup of each
// archive that has no Backup of its name there, so that a cluster that has only the storage can
// restore everything on it. It runs once the storage is Available: at once the first time,
// then syncInterval after the last import, and for each new value of annotation
// platform.example.com/sync-now.
//
// The agent prints the list on its log, one line per archive, because the termination message
// holds 4 KiB; its result there says how many lines to expect, so that a log that was cut fails
// the import instead of importing part of the list.
//
// A failed import changes neither the phase nor lastImportTime: the Imported condition turns
// False with the reason, an ImportFailed Warning says what happened, and the next import starts
// ImportRetryInterval after the failed one ended, then after as long as imports have been
// failing, up to MaxImportRetryInterval. The failed import's Job is kept until then, as the
// record of when it failed.

// Names of imports. The keys are part of the API: people set platformv1.AnnotationSyncNow, and
// tools select import Jobs by their labels.
const (
	// ComponentStorageImport is the agentjob.LabelComponent value of an import Job and its pod.
	ComponentStorageImport = "storage-import"
	// AnnotationSyncedNow is the controller's record of the last platformv1.AnnotationSyncNow
	// value an import started for, as AnnotationCheckedNow is for checks.
	AnnotationSyncedNow = "platform.example.com/synced-now"
	// ConditionImported is True when the last import listed the storage, and False with the
	// reason when it failed. It leaves the phase and the Ready condition alone: a storage whose
	// import failed still serves backups and restores.
	ConditionImported = "Imported"
)

// Reasons of the Imported condition besides platformv1.ReasonImported (the import worked),
// platformv1.ReasonJobConflict and the agent's own (AccessDenied, …).
const (
	// ReasonImportFailed: the import Job failed without the agent saying why, or ran out of time.
	ReasonImportFailed = "ImportFailed"
	// ReasonListIncomplete: the import pod's log does not hold the whole list the agent printed,
	// so nothing was imported.
	ReasonListIncomplete = "ListIncomplete"
)

// Reasons of the Events of imports.
const (
	// EventBackupsImported: an import made Backups of archives found on the storage.
	EventBackupsImported = "BackupsImported"
	// EventImportFailed: an import failed; the message says why and when the next one starts.
	EventImportFailed = "ImportFailed"
)

// Timing and bounds of imports.
const (
	// DefaultSyncInterval is how often a storage whose spec leaves syncInterval unset is
	// imported from, as the API's default says.
	DefaultSyncInterval = time.Hour
	// ImportDeadlineSeconds bounds an import Job: it reads one small manifest per archive.
	ImportDeadlineSeconds int64 = 600
	// ImportRetryInterval is the least time between a failed import and the next one.
	ImportRetryInterval = 5 * time.Minute
	// MaxImportRetryInterval is the most time between a failed import and the next one.
	MaxImportRetryInterval = time.Hour
	// MaxImportLog bounds what is read of an import pod's log: some 30,000 archives.
	MaxImportLog = 32 << 20
	// maxNamed is how many names a message lists before it counts the rest.
	maxNamed = 10
)

// importFailure is why an import failed: the Imported condition's reason and message.
type importFailure struct{ reason, message string }

// importArchives concludes bs's import Job that ended last, unless the status in the cache holds
// its import, and starts the next import when one is due. It returns the import Job the cache
// does not hold (the one it created, or found made by an earlier sync), and how long until the
// next import is due.
func (c *Controller) importArchives(ctx context.Context, bs, s *platformv1.BackupStorage, jobs []*batchv1.Job, events *[]agentjob.Event) (*batchv1.Job, time.Duration, error) {
	now := c.deps.Clock.Now()
	running, latest := lastImports(jobs)
	if running != nil {
		// One import at a time; its end is news through its Job's watch.
		return nil, 0, nil
	}
	var failedAt *time.Time
	var failed *importFailure
	if latest != nil && !importConcluded(bs, latest) {
		var wait time.Duration
		var err error
		if failed, wait, err = c.concludeImport(ctx, bs, s, latest, now, events); err != nil || wait > 0 {
			return nil, wait, err
		}
		if failed != nil {
			end := finishedAt(latest)
			failedAt = &end
		}
	}
	toldBefore := failed != nil && !setImported(s, metav1.ConditionFalse, failed.reason, failed.message, now)
	why, at, due := importDue(bs, s, failedAt, now)
	if failed != nil && !toldBefore {
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeWarning, Reason: EventImportFailed,
			Message: fmt.Sprintf("Import failed (%s): %s %s", failed.reason, failed.message, nextImport(bs, s, at, due))})
	}
	if !due {
		return nil, 0, nil
	}
	if at.After(now) {
		return nil, at.Sub(now), nil
	}
	st, refusal, err := agentjob.ResolveStorage(c.storages, bs.Namespace, &platformv1.Storage{Name: bs.Name})
	if err != nil || refusal != nil {
		// A storage without a backend never becomes Available.
		return nil, 0, err
	}
	job, _, conflict, err := c.startJob(ctx, bs, newImportJob(bs, st, importJobName(s, failedAt), c.deps.AgentImage), "import", why)
	if conflict != "" {
		setImported(s, metav1.ConditionFalse, platformv1.ReasonJobConflict, conflict, now)
		return nil, ConflictRetryInterval, nil
	}
	return job, 0, err
}

// nextImport says when the import after a failed one starts, and how to start one sooner.
func nextImport(bs, s *platformv1.BackupStorage, at time.Time, due bool) string {
	switch {
	case due:
		return fmt.Sprintf("The next import starts at %s; set annotation %s to a new value to import sooner.", at.UTC().Format(time.RFC3339), platformv1.AnnotationSyncNow)
	case !usable(bs) || !usable(s):
		return "The next import starts once a check proves the storage usable."
	}
	return fmt.Sprintf("Periodic imports are off (syncInterval 0s): set annotation %s to a new value to import again.", platformv1.AnnotationSyncNow)
}

// importDue says why bs needs an import, and when: now for a new sync-now value and for a
// storage never imported from, syncInterval after the last import otherwise, but not before the
// retry wait after a failed import is over (failedAt: when the last import, which failed,
// ended). due is false when no import is due at any time: the storage is not Available, or the
// periodic import is off.
func importDue(bs, s *platformv1.BackupStorage, failedAt *time.Time, now time.Time) (why string, at time.Time, due bool) {
	if !usable(bs) || !usable(s) {
		return "", time.Time{}, false
	}
	if token := pendingRequest(bs, platformv1.AnnotationSyncNow, AnnotationSyncedNow); token != "" {
		return fmt.Sprintf("%s was set to %q", platformv1.AnnotationSyncNow, token), now, true
	}
	switch last, every := s.Status.LastImportTime, syncInterval(s); {
	case last == nil:
		why, at = "it was never imported from", now
	case s.Status.LastValidationTime != nil && last.Before(s.Status.LastValidationTime):
		// Its spec changed, or a check was asked for: what it points at may hold other archives.
		why, at = "it was checked again since the last import", now
	case every > 0:
		why, at = fmt.Sprintf("syncInterval (%s) has passed since the last import", every), last.Add(every)
	default:
		return "", time.Time{}, false
	}
	if failedAt != nil {
		if retry := failedAt.Add(retryWait(s, *failedAt)); retry.After(at) {
			why, at = "the import that failed is retried", retry
		}
	}
	return why, at, true
}

// usable reports whether the last check proved bs's current spec usable.
func usable(bs *platformv1.BackupStorage) bool {
	return bs.Status.Phase == platformv1.StorageAvailable && specChecked(bs)
}

// syncInterval is how long after an import the next one is due; zero turns them off.
func syncInterval(s *platformv1.BackupStorage) time.Duration {
	if s.Spec.SyncInterval == nil {
		return DefaultSyncInterval
	}
	return max(s.Spec.SyncInterval.Duration, 0)
}

// retryWait is how long after a failed import, which ended at failedAt, the next one starts:
// ImportRetryInterval, or as long as imports have been failing when that is longer, so that a
// lasting failure runs fewer and fewer Jobs, but at most MaxImportRetryInterval.
func retryWait(s *platformv1.BackupStorage, failedAt time.Time) time.Duration {
	wait := ImportRetryInterval
	if c := meta.FindStatusCondition(s.Status.Conditions, ConditionImported); c != nil && c.Status == metav1.ConditionFalse {
		wait = max(wait, failedAt.Sub(c.LastTransitionTime.Time))
	}
	return min(wait, MaxImportRetryInterval)
}

// setImported sets the Imported condition and reports whether it says something new.
func setImported(s *platformv1.BackupStorage, status metav1.ConditionStatus, reason, message string, now time.Time) bool {
	old := meta.FindStatusCondition(s.Status.Conditions, ConditionImported)
	news := old == nil || old.Status != status || old.Reason != reason || old.Message != message
	setCondition(s, ConditionImported, status, reason, message, now)
	return news
}

// importJobName is the name of the import after the last one: after the failed import that
// ended at failedAt, else after the last import, else after the storage's creation. A restarted
// controller finds the Job it made, and no import takes the name of the one before it.
func importJobName(s *platformv1.BackupStorage, failedAt *time.Time) string {
	after := s.CreationTimestamp.Time
	if t := s.Status.LastImportTime; t != nil {
		after = t.Time
	}
	if failedAt != nil && failedAt.After(after) {
		after = *failedAt
	}
	return names.Join("import", s.Name, strconv.FormatInt(after.Unix(), 10))
}

// newImportJob is the Job that runs `agent storage list` on the folder of bs's namespace on st.
// Listing never writes: the claim is mounted read-only and the bucket gets none of the flags
// of writes (encryption, object lock).
func newImportJob(bs *platformv1.BackupStorage, st agentjob.Storage, name, image string) *batchv1.Job {
	var access agentjob.Access
	if st.IsS3() {
		access = dirAccess(st, path.Join(st.Root(), bs.Namespace), false)
	} else {
		// The claim's root: the kubelet would create a subPath that does not exist, which is a
		// write, and a namespace never backed up has no folder.
		access = dirAccess(st, "", false)
		access.Location = path.Join(access.Location, st.SubPath, bs.Namespace)
	}
	args := append(strings.Fields(agent.OpStorageList), "--location", access.Location)
	return newAgentJob(bs, name, image, ComponentStorageImport, platformv1.AnnotationSyncNow, args, access, ImportDeadlineSeconds)
}

// lastImports are, of bs's import Jobs, the one that runs, if any, and the finished one that
// ended last. Jobs being deleted are neither.
func lastImports(jobs []*batchv1.Job) (running, latest *batchv1.Job) {
	for _, job := range jobs {
		switch {
		case job.DeletionTimestamp != nil:
		case !agentjob.Observe(job, nil).State.Finished():
			running = job
		case latest == nil || finishedAt(job).After(finishedAt(latest)):
			latest = job
		}
	}
	return running, latest
}

// finishedAt is when a finished Job ended, as its conditions say, or else when it was created.
func finishedAt(job *batchv1.Job) time.Time {
	if t := agentjob.Observe(job, nil).FinishTime; t != nil {
		return t.Time
	}
	return job.CreationTimestamp.Time
}

// importConcluded reports whether bs's status holds the import of job, which ended: its
// lastImportTime is the job's end or later. (The API keeps whole seconds.)
func importConcluded(bs *platformv1.BackupStorage, job *batchv1.Job) bool {
	last := bs.Status.LastImportTime
	return last != nil && !last.Time.Before(finishedAt(job).Truncate(time.Second))
}

// staleImports are bs's finished import Jobs that nothing needs any more: all but the one that
// ended last, and that one too once the status in the cache holds its import, or a later import
// runs. A failed import's Job stays until then: it is the record of when the import failed.
func staleImports(bs *platformv1.BackupStorage, jobs []*batchv1.Job) []*batchv1.Job {
	running, latest := lastImports(jobs)
	var stale []*batchv1.Job
	for _, job := range jobs {
		if job == running || !agentjob.Observe(job, nil).State.Finished() {
			continue
		}
		if job != latest || running != nil || importConcluded(bs, job) {
			stale = append(stale, job)
		}
	}
	return stale
}

// concludeImport records in s what the finished import Job found, importing the archives that
// have no Backup, or says why the import failed. wait, when positive, is how long to wait for
// the Job's result to reach the cache; err is a failure worth a retry, such as of the API.
func (c *Controller) concludeImport(ctx context.Context, bs, s *platformv1.BackupStorage, job *batchv1.Job, now time.Time, events *[]agentjob.Event) (*importFailure, time.Duration, error) {
	pods, err := agentjob.PodsOf(c.pods, job, jobSelector(bs, ComponentStorageImport))
	if err != nil {
		return nil, 0, err
	}
	obs := agentjob.Observe(job, pods)
	end := agentjob.Conclude(job, obs, nil, now, agentjob.StorageListDecoder)
	if end.Wait > 0 {
		return nil, end.Wait, nil
	}
	switch end.Outcome {
	case agentjob.OutcomeSucceeded:
		found, incomplete, err := c.readList(ctx, job.Namespace, obs.ResultPod, end.Result.Archives)
		if err != nil {
			return nil, 0, err
		}
		if incomplete != "" {
			return &importFailure{ReasonListIncomplete, incomplete + " Nothing was imported."}, 0, nil
		}
		return c.importListed(ctx, bs, s, end.Result.Location, found, finishedAt(job), now, events)
	case agentjob.OutcomeResultMissing:
		return &importFailure{ReasonImportFailed, end.MissingResult(job) + fmt.Sprintf(
			", so nothing was imported: see the logs of its pod (kubectl logs -n %s -l batch.kubernetes.io/job-name=%s).", job.Namespace, job.Name)}, 0, nil
	}
	reason, message := failure(job, obs, end.Status, end.DecodeErr, ReasonImportFailed, "Nothing was imported.")
	return &importFailure{reason, message}, 0, nil
}

// readList reads the archives the pod listed on its log, want of them by its result. A log
// that cannot be trusted to hold them all is said in incomplete; err is a failure to read it
// that a retry may not meet.
func (c *Controller) readList(ctx context.Context, namespace, pod string, want int) (found []storage.Listed, incomplete string, err error) {
	log, err := c.logs(ctx, namespace, pod, agentjob.ContainerName)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Sprintf("The log of pod %s, which holds the list of archives, is gone.", pod), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the log of pod %s/%s: %w", namespace, pod, err)
	}
	defer log.Close()
	found, size, err := parseList(log)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("reading the log of pod %s/%s: %w", namespace, pod, err)
	case size > MaxImportLog:
		return nil, fmt.Sprintf("The log of pod %s, which holds the list of archives, is larger than the %d MiB an import reads.", pod, MaxImportLog>>20), nil
	case len(found) != want:
		return nil, fmt.Sprintf("The log of pod %s holds %d of the %d archives the agent listed: it was cut, as the kubelet does past its containerLogMaxSize (10 MiB by default).",
			pod, len(found), want), nil
	}
	return found, "", nil
}

// parseList reads the storage.Listed lines of a log, and up to one byte more than MaxImportLog
// of it, skipping the other lines, such as the agent's result and warnings. size is how much it
// read.
func parseList(r io.Reader) (found []storage.Listed, size int64, err error) {
	br := bufio.NewReader(io.LimitReader(r, MaxImportLog+1))
	for {
		line, err := br.ReadBytes('\n')
		size += int64(len(line))
		var l storage.Listed
		if line = bytes.TrimSpace(line); bytes.HasPrefix(line, []byte("{")) && json.Unmarshal(line, &l) == nil && l.Key != "" && l.Manifest.ManifestVersion > 0 {
			found = append(found, l)
		}
		if err == io.EOF {
			return found, size, nil
		}
		if err != nil {
			return nil, size, err
		}
	}
}

// listing is where an import Job listed archives: the folder of a namespace on a storage.
type listing struct {
	// where names the folder for people.
	where string
	// dir is the folder relative to the storage's root: "<prefix or subPath>/<namespace>".
	dir string
	// bucket is the bucket, for object storage.
	bucket string
}

// listingAt is the listing of the location the agent listed: s3://BUCKET/PREFIX, or a directory
// below where the agent sees the claim.
func listingAt(bs *platformv1.BackupStorage, location string) (listing, bool) {
	if bucket, prefix, ok := s3.ParseLocation(location); ok {
		return listing{where: location, dir: strings.Trim(prefix, "/"), bucket: bucket}, true
	}
	rel, ok := strings.CutPrefix(location, agentjob.StorageMountPath+"/")
	if !ok {
		return listing{}, false
	}
	claim := "the storage's claim"
	if pvc := bs.Spec.PersistentVolumeClaim; pvc != nil {
		claim = "claim " + pvc.ClaimName
	}
	rel = strings.Trim(rel, "/")
	return listing{where: fmt.Sprintf("directory %s of %s", rel, claim), dir: rel}, true
}

// paths are the archive key's path relative to the storage's root and relative to the listed
// folder, or false for a key outside that folder. Keys of a bucket are relative to its root,
// those of a directory to the directory.
func (l listing) paths(key string) (full, rel string, ok bool) {
	if l.bucket != "" {
		rel, ok = strings.CutPrefix(key, l.dir+"/")
		return key, rel, ok
	}
	return path.Join(l.dir, key), key, true
}

// importListed makes a Completed Backup of each archive in found, listed at location, that has
// no Backup of its name in the namespace, and records in s the import, which ended at at.
func (c *Controller) importListed(ctx context.Context, bs, s *platformv1.BackupStorage, location string, found []storage.Listed, at, now time.Time, events *[]agentjob.Event) (*importFailure, time.Duration, error) {
	where, ok := listingAt(bs, location)
	if !ok {
		return &importFailure{ReasonImportFailed, fmt.Sprintf("The agent reports it listed %q, which is neither s3://BUCKET/PREFIX nor a directory below %s. Nothing was imported.",
			location, agentjob.StorageMountPath)}, 0, nil
	}
	var imported, skipped []string
	existing := 0
	for _, l := range found {
		b, status, why := importable(bs, where, l, now)
		if why == "" {
			var err error
			if b, why, err = c.importBackup(ctx, bs.Name, b, status); err != nil {
				return nil, 0, err
			}
		}
		switch {
		case why != "":
			skipped = append(skipped, fmt.Sprintf("%s (%s)", l.Key, why))
		case b == nil:
			existing++
		default:
			imported = append(imported, b.Name)
		}
	}
	if len(skipped) > 0 {
		klog.FromContext(ctx).V(2).Info("Skipped archives that cannot be Backups of this namespace", "archives", skipped)
	}
	s.Status.LastImportTime = &metav1.Time{Time: at}
	s.Status.Archives = int32(min(len(found), math.MaxInt32))
	s.Status.ImportedBackups = int32(min(len(imported), math.MaxInt32))
	summary := fmt.Sprintf("Listed %s in %s: imported %s, %d already had one", count(len(found), "archive"), where.where, count(len(imported), "Backup"), existing)
	if len(skipped) > 0 {
		summary += fmt.Sprintf(", skipped %d that cannot be Backups of this namespace: %s", len(skipped), named(skipped))
	}
	setImported(s, metav1.ConditionTrue, platformv1.ReasonImported, summary+".", now)
	if len(imported) > 0 {
		*events = append(*events, agentjob.Event{Type: corev1.EventTypeNormal, Reason: EventBackupsImported,
			Message: fmt.Sprintf("Imported %s from %s: %s", count(len(imported), "Backup"), where.where, named(imported))})
	}
	return nil, 0, nil
}

// importable is the Backup that the archive l, found in the listing at, stands for, with the
// status that records the archive, or why it cannot be a Backup of bs's namespace. The
// manifest names the Backup, its claim and policy; a manifest that does not (an older one)
// leaves them to the archive's key, <claim>/<backup>.tar.zst below the namespace's folder.
func importable(bs *platformv1.BackupStorage, at listing, l storage.Listed, now time.Time) (*platformv1.Backup, platformv1.BackupStatus, string) {
	m := l.Manifest
	key, rel, ok := at.paths(l.Key)
	if !ok {
		return nil, platformv1.BackupStatus{}, "outside the listed folder " + at.dir
	}
	if m.Namespace != "" && m.Namespace != bs.Namespace {
		return nil, platformv1.BackupStatus{}, "its manifest says it is of namespace " + m.Namespace
	}
	var format archive.Format
	switch m.Format {
	case "", archive.FormatTar:
		if format, ok = archive.FormatForName(key); !ok {
			return nil, platformv1.BackupStatus{}, "its name has no archive extension"
		}
	case archive.FormatFile:
		if err := archive.CheckFileName(m.FileName); err != nil {
			return nil, platformv1.BackupStatus{}, fmt.Sprintf("its manifest records format file and the file name %q, which is not one", m.FileName)
		}
		if format, ok = archive.FileFormatForName(path.Base(key), m.FileName); !ok {
			return nil, platformv1.BackupStatus{}, fmt.Sprintf("its manifest records a file archive of %q but its name does not end in .%s[.zst|.gz]", m.FileName, m.FileName)
		}
		if len(m.Command) == 0 || m.Container == "" || m.ExecServiceAccountName == "" {
			return nil, platformv1.BackupStatus{}, "its manifest records a file archive but not the command, container and ServiceAccount that made it, which its Backup's spec.source.command needs"
		}
	default:
		return nil, platformv1.BackupStatus{}, fmt.Sprintf("its manifest records format %q, which this operator does not know: upgrade the operator", m.Format)
	}
	comp := format.Compression
	if m.Compression != "" && m.Compression != comp {
		return nil, platformv1.BackupStatus{}, fmt.Sprintf("its manifest says %s, its name %s", m.Compression, comp)
	}
	switch {
	case format.Encrypted && m.Encryption == nil:
		return nil, platformv1.BackupStatus{}, "its name ends in " + archive.EncryptedExtension + " but its manifest records no encryption"
	case !format.Encrypted && m.Encryption != nil:
		return nil, platformv1.BackupStatus{}, "its manifest records encryption but its name does not end in " + archive.EncryptedExtension
	}
	name, pvc := m.Backup, m.PVC
	if name == "" {
		name = format.Trim(path.Base(key))
	}
	if d := path.Dir(rel); pvc == "" && d != "." && !strings.Contains(d, "/") {
		pvc = d
	}
	for _, n := range []struct{ what, value string }{{"Backup", name}, {"claim", pvc}, {"policy", m.Policy}} {
		if errs := validation.IsDNS1123Subdomain(n.value); len(errs) > 0 && (n.value != "" || n.what != "policy") {
			return nil, platformv1.BackupStatus{}, fmt.Sprintf("%q is not a valid %s name", n.value, n.what)
		}
	}
	if !archive.ValidSHA256(m.SHA256) || min(m.Size, m.SourceBytes, m.Files, m.Directories, m.Symlinks, m.Hardlinks, m.ChangedFiles, m.Skipped, m.Vanished) < 0 {
		return nil, platformv1.BackupStatus{}, "its manifest has no valid sha256 or a negative count"
	}

	b := &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: bs.Namespace,
			Name:      name,
			Labels: map[string]string{
				platformv1.LabelManagedBy: platformv1.ManagedByValue,
				platformv1.LabelPVC:       names.Join(pvc),
				platformv1.LabelImported:  "true",
			},
			Annotations: map[string]string{platformv1.AnnotationImportedFrom: bs.Name},
		},
		Spec: platformv1.BackupSpec{
			PVCName:    pvc,
			PolicyName: m.Policy,
			BackupRunSettings: platformv1.BackupRunSettings{
				Storage:        &platformv1.Storage{Name: bs.Name},
				Compression:    platformv1.Compression(comp),
				DeletionPolicy: platformv1.DeletionPolicyDelete,
			},
		},
	}
	if m.Policy != "" {
		b.Labels[platformv1.LabelPolicy] = names.Join(m.Policy)
	}
	if cmd := commandSource(m); cmd != nil {
		b.Spec.Source = &platformv1.BackupSource{CopyMethod: platformv1.CopyMethodDirect, Command: cmd}
		b.Spec.ExecServiceAccountName = m.ExecServiceAccountName
	}
	if bs.Spec.AccessMode != platformv1.StorageReadOnly {
		// Deleting an imported Backup deletes its archive, as for any other Backup.
		b.Finalizers = []string{platformv1.FinalizerArchiveCleanup}
	}

	status := platformv1.BackupStatus{
		Phase: platformv1.BackupCompleted,
		Artifact: &platformv1.Artifact{
			Path:         key,
			StorageName:  bs.Name,
			Bucket:       at.bucket,
			Size:         m.Size,
			DisplaySize:  agentjob.HumanBytes(m.Size),
			SHA256:       m.SHA256,
			Compression:  platformv1.Compression(comp),
			Encryption:   agentjob.ArtifactEncryption(m.Encryption),
			SourceBytes:  m.SourceBytes,
			Files:        m.Files + m.Directories + m.Symlinks + m.Hardlinks,
			ChangedFiles: m.ChangedFiles,
			SkippedFiles: m.Skipped + m.Vanished,
		},
	}
	if len(m.Command) > 0 {
		status.Source = &platformv1.SourceStatus{Type: platformv1.SourceCommand, Container: m.Container, Command: m.Command, Format: platformv1.StreamFormatTar}
		if m.Format == archive.FormatFile {
			status.Source.Format = platformv1.StreamFormatFile
		}
	}
	if !m.StartTime.IsZero() {
		status.StartTime = &metav1.Time{Time: m.StartTime}
	}
	if !m.CompletionTime.IsZero() {
		status.CompletionTime = &metav1.Time{Time: m.CompletionTime}
		if status.StartTime != nil {
			status.Duration = agentjob.Duration(m.StartTime, m.CompletionTime)
		}
	}
	agentjob.SetSucceeded(&status.Conditions, metav1.ConditionTrue, platformv1.ReasonImported,
		fmt.Sprintf("Imported from BackupStorage %s, where archive %s was found.", bs.Name, key), 0, now)
	return b, status, ""
}

// importBackup creates want and writes its status, or writes the status of the Backup of its
// name that an import from the storage called from created without one, as a crash between the
// two writes leaves it. It returns the Backup whose status it wrote; none when a Backup of the
// name exists otherwise, which it never touches; or why the API server refused the Backup.
func (c *Controller) importBackup(ctx context.Context, from string, want *platformv1.Backup, status platformv1.BackupStatus) (*platformv1.Backup, string, error) {
	client := c.deps.Client.PlatformV1().Backups(want.Namespace)
	var have *platformv1.Backup
	if obj, exists, err := c.backups.GetByKey(want.Namespace + "/" + want.Name); err != nil {
		return nil, "", err
	} else if exists {
		have = obj.(*platformv1.Backup)
	} else {
		created, err := client.Create(ctx, want, metav1.CreateOptions{})
		switch {
		case err == nil:
			have = created
		case apierrors.IsAlreadyExists(err):
			if have, err = client.Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
				return nil, "", fmt.Errorf("reading Backup %s/%s, which already exists: %w", want.Namespace, want.Name, err)
			}
		case apierrors.IsInvalid(err):
			return nil, "the API server refused its Backup: " + err.Error(), nil
		default:
			return nil, "", fmt.Errorf("creating Backup %s/%s: %w", want.Namespace, want.Name, err)
		}
	}
	if have.Annotations[platformv1.AnnotationImportedFrom] != from || have.Status.Phase != "" || have.DeletionTimestamp != nil {
		return nil, "", nil
	}
	b := have.DeepCopy()
	b.Status = *status.DeepCopy()
	b.Status.ObservedGeneration = b.Generation
	for i := range b.Status.Conditions {
		b.Status.Conditions[i].ObservedGeneration = b.Generation
	}
	updated, err := client.UpdateStatus(ctx, b, metav1.UpdateOptions{})
	if apierrors.IsInvalid(err) {
		return nil, "the API server refused its status: " + err.Error(), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("writing the status of imported Backup %s/%s: %w", b.Namespace, b.Name, err)
	}
	return updated, "", nil
}

// count is n things: "1 archive", "3 archives".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// named lists the first maxNamed of list and counts the rest.
func named(list []string) string {
	if len(list) <= maxNamed {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:maxNamed], ", "), len(list)-maxNamed)
}

// commandSource is the source.command of the Backup of the archive that m describes, so that a
// cluster that has only the storage restores a file archive as it was made (a restore needs its
// format and file name). It is nil for a volume's archive, and for a command's tar whose
// manifest, written before manifests recorded them, lacks the container or the ServiceAccount
// that the API requires with a command: a tar restores the same without it, and inventing them
// would misstate how the Backup was taken. status.source still names the command.
func commandSource(m archive.Manifest) *platformv1.CommandSource {
	if len(m.Command) == 0 || m.Container == "" || m.ExecServiceAccountName == "" {
		return nil
	}
	cmd := &platformv1.CommandSource{Container: m.Container, Command: m.Command, Format: platformv1.StreamFormatTar}
	if m.Format == archive.FormatFile {
		cmd.Format, cmd.FileName = platformv1.StreamFormatFile, m.FileName
	}
	return cmd
}
