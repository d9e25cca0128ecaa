package v1

// FinalizerArchiveCleanup holds a Backup whose deletionPolicy is Delete until a cleanup Job has
// deleted its archive, checksum and manifest from storage, so deleting the object deletes the data.
const FinalizerArchiveCleanup = "platform.example.com/archive-cleanup"

// Reasons of the Succeeded condition while a Backup or Restore runs (status Unknown) and when it
// has succeeded (status True). Tools match on them, so they never change meaning.
const (
	// ReasonJobPending: the agent's Job exists and its pod has not started yet.
	ReasonJobPending = "JobPending"
	// ReasonRunning: the agent's pod is running.
	ReasonRunning = "Running"
	// ReasonCompleted: the run succeeded.
	ReasonCompleted = "Completed"
	// ReasonImported: the Backup was made from an archive found on a BackupStorage, not by a run
	// of its own; on a BackupStorage's Imported condition, the last import listed the storage.
	ReasonImported = "Imported"
)

// Reasons of the Succeeded condition when a Backup or Restore failed (status False) because of
// what the controller found before or while it ran the Job.
const (
	// ReasonClaimNotFound: the claim to back up, or a restore's target without a create
	// template, does not exist.
	ReasonClaimNotFound = "ClaimNotFound"
	// ReasonClaimNotBound: the claim to back up is not bound to a volume, so there is nothing to
	// read; mounting it would provision an empty volume instead.
	ReasonClaimNotBound = "ClaimNotBound"
	// ReasonStorageNotFound: the claim that holds archives, or the BackupStorage a spec names,
	// does not exist.
	ReasonStorageNotFound = "StorageNotFound"
	// ReasonStorageReadOnly: a Backup names a ReadOnly BackupStorage, which is never written.
	ReasonStorageReadOnly = "StorageReadOnly"
	// ReasonPodSecurityRefused: the namespace enforces a Pod Security level that refuses the
	// agent's default pod (root with capabilities): set agentSecurityContext.
	ReasonPodSecurityRefused = "PodSecurityRefused"
	// ReasonNoRunningPod: a Backup with a source command or hooks found no running pod that
	// mounts the claim; commands run only in the application's own pod, never a guessed one.
	ReasonNoRunningPod = "NoRunningPod"
	// ReasonPodNotUnique: more than one running pod mounts the claim, so which one runs the
	// command or hooks would be a guess.
	ReasonPodNotUnique = "PodNotUnique"
	// ReasonClaimInUse: another running pod holds the claim in a way the agent cannot share: a
	// ReadWriteOncePod claim that only one pod may mount, or a restore target mounted read-write.
	ReasonClaimInUse = "ClaimInUse"
	// ReasonClaimCreateFailed: the API server refused to create a restore's target claim.
	ReasonClaimCreateFailed = "ClaimCreateFailed"
	// ReasonBackupNotFound: a Restore names a Backup that does not exist or is being deleted.
	ReasonBackupNotFound = "BackupNotFound"
	// ReasonBackupNotCompleted: a Restore names a Backup that is not Completed or records no
	// usable archive.
	ReasonBackupNotCompleted = "BackupNotCompleted"
	// ReasonPodNotStarted: the run's pod did not start within pendingDeadlineSeconds; the
	// condition's message says what kept it.
	ReasonPodNotStarted = "PodNotStarted"
	// ReasonSnapshotAPIMissing: a Backup with copyMethod Snapshot found no snapshot.storage.k8s.io/v1
	// API: the cluster has no CSI snapshot support installed.
	ReasonSnapshotAPIMissing = "SnapshotAPIMissing"
	// ReasonSnapshotClassNotFound: the VolumeSnapshotClass named does not exist, or none is the
	// default for the claim's CSI driver.
	ReasonSnapshotClassNotFound = "SnapshotClassNotFound"
	// ReasonSnapshotFailed: the VolumeSnapshot reported an error, or was not ready within the
	// Backup's activeDeadlineSeconds.
	ReasonSnapshotFailed = "SnapshotFailed"
	// ReasonSnapshotPending: the VolumeSnapshot is being cut (SnapshotReady Unknown).
	ReasonSnapshotPending = "SnapshotPending"
	// ReasonSnapshotReady: the VolumeSnapshot is ready to use (SnapshotReady True).
	ReasonSnapshotReady = "SnapshotReady"
	// ReasonObjectConflict: an object with the name the run gives its snapshot or temporary
	// claim exists and belongs to something else.
	ReasonObjectConflict = "ObjectConflict"
	// ReasonJobConflict: a Job with the run's name exists but belongs to another object.
	ReasonJobConflict = "JobConflict"
	// ReasonJobLost: the run's Job was deleted before it finished.
	ReasonJobLost = "JobLost"
	// ReasonDeadlineExceeded: the run took longer than activeDeadlineSeconds and was stopped.
	ReasonDeadlineExceeded = "DeadlineExceeded"
	// ReasonJobFailed: the Job failed without a result from the agent, for example because its
	// pods could not start, were killed for memory, or the retries ran out.
	ReasonJobFailed = "JobFailed"
	// ReasonResultMissing: the Job ended but no pod left a readable result.
	ReasonResultMissing = "ResultMissing"
)

// Reasons of the Succeeded condition when the archive agent reported a failure. Each is the
// agent's own reason, so the condition says exactly what the agent found.
const (
	// ReasonInvalidArgument: the agent rejected its command line.
	ReasonInvalidArgument = "InvalidArgument"
	// ReasonSourceNotFound: the claim's mount was not a readable directory.
	ReasonSourceNotFound = "SourceNotFound"
	// ReasonReadFailed: reading the source or the archive failed.
	ReasonReadFailed = "ReadFailed"
	// ReasonWriteFailed: writing the archive or the target failed, such as on a full volume.
	ReasonWriteFailed = "WriteFailed"
	// ReasonOutputExists: an archive with the Backup's name is already on storage.
	ReasonOutputExists = "OutputExists"
	// ReasonArchiveNotFound: the Backup's archive is not on storage.
	ReasonArchiveNotFound = "ArchiveNotFound"
	// ReasonChecksumMismatch: the archive's sha256 differs from the one the Backup recorded;
	// nothing was written.
	ReasonChecksumMismatch = "ChecksumMismatch"
	// ReasonCorruptArchive: the archive does not decompress or parse.
	ReasonCorruptArchive = "CorruptArchive"
	// ReasonUnsafeArchive: the archive holds entries that would land outside the target.
	ReasonUnsafeArchive = "UnsafeArchive"
	// ReasonTargetNotFound: the target claim's mount was not a directory.
	ReasonTargetNotFound = "TargetNotFound"
	// ReasonTargetNotEmpty: the target holds files and overwritePolicy is Refuse; nothing was
	// written.
	ReasonTargetNotEmpty = "TargetNotEmpty"
	// ReasonCanceled: the agent was stopped before it finished.
	ReasonCanceled = "Canceled"
	// ReasonEndpointUnreachable: the object storage's endpoint did not answer.
	ReasonEndpointUnreachable = "EndpointUnreachable"
	// ReasonTLSNotTrusted: the object storage's certificate is not trusted: set its caBundle.
	ReasonTLSNotTrusted = "TLSNotTrusted"
	// ReasonAccessDenied: the object storage refused the credentials, or they lack a permission.
	ReasonAccessDenied = "AccessDenied"
	// ReasonBucketNotFound: the storage's bucket does not exist.
	ReasonBucketNotFound = "BucketNotFound"
	// ReasonWrongRegion: the bucket is in another region than the storage says.
	ReasonWrongRegion = "WrongRegion"
	// ReasonStorageError: the object storage refused a request for another reason.
	ReasonStorageError = "StorageError"
	// ReasonArchiveTooLarge: the archive outgrew the upload's 10,000 parts; nothing was kept.
	ReasonArchiveTooLarge = "ArchiveTooLarge"
	// ReasonArchiveRetained: object lock keeps the archive; it was not deleted.
	ReasonArchiveRetained = "ArchiveRetained"
	// ReasonEncryptionKeyMissing: the archive is encrypted and the restore has no identity:
	// the storage's encryption names no identitySecretRef.
	ReasonEncryptionKeyMissing = "EncryptionKeyMissing"
	// ReasonWrongEncryptionKey: the identity the restore was given is not one the archive was
	// encrypted to; nothing was written.
	ReasonWrongEncryptionKey = "WrongEncryptionKey"
	// ReasonInvalidEncryption: the storage's encryption names no valid recipient.
	ReasonInvalidEncryption = "InvalidEncryption"
	// ReasonExecForbidden: the agent's ServiceAccount (execServiceAccountName) may not get pods
	// or create pods/exec in the namespace; the message names the rule to grant.
	ReasonExecForbidden = "ExecForbidden"
	// ReasonPodNotRunning: the pod that mounts the claim stopped running, or does not run the
	// container a command or hook names.
	ReasonPodNotRunning = "PodNotRunning"
	// ReasonCommandFailed: the source command exited non-zero, timed out or broke its stream;
	// the message has its exit code and the end of its standard error.
	ReasonCommandFailed = "CommandFailed"
	// ReasonStreamFailed: the source command's output was not what its format says.
	ReasonStreamFailed = "StreamFailed"
	// ReasonHookFailed: a hook with onError Fail failed; status.hooks has its exit code and output.
	ReasonHookFailed = "HookFailed"
	// ReasonAgentFailed: the agent failed for a reason this controller does not know.
	ReasonAgentFailed = "AgentFailed"
)
