// Package agentjob builds the Jobs that run the archive agent and reads what they did: one place
// for the agent pod's security context, volumes and arguments, for classifying a Job's state,
// for decoding the result the agent leaves in its termination message, and for the steps every
// run takes, from finding its Job to concluding what it did. The Backup and Restore controllers
// decide what to run and what it means for their objects; this package decides how it runs.
package agentjob

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"platform.example.com/backup-operator/pkg/agent"
	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
)

// ContainerName is the name of the agent's container in every agent pod.
const ContainerName = "agent"

// LabelComponent says which kind of run a Job or pod is, so people and tools can tell a backup
// from its cleanup at a glance.
const LabelComponent = "app.kubernetes.io/component"

// Values of LabelComponent.
const (
	// ComponentBackup marks the Job that writes a Backup's archive.
	ComponentBackup = "backup"
	// ComponentRestore marks the Job that writes a Restore's target.
	ComponentRestore = "restore"
	// ComponentCleanup marks the Job that deletes a deleted Backup's archive.
	ComponentCleanup = "archive-cleanup"
)

// Where the agent sees its volumes.
const (
	// SourceMountPath is where a backup reads the claim it archives.
	SourceMountPath = "/source"
	// StorageMountPath is the directory of the archive on the storage claim.
	StorageMountPath = "/storage"
	// TargetMountPath is where a restore writes.
	TargetMountPath = "/target"
)

// Linux capabilities the agent gets on top of none. The pod runs as root only so that these take
// effect: Kubernetes grants added capabilities to a root process only (it sets no ambient set).
var (
	// ReadCapabilities let a backup read every file and list every directory whatever its owner
	// and mode, and nothing else: it cannot write to the source, which is mounted read-only too.
	ReadCapabilities = []corev1.Capability{"DAC_READ_SEARCH"}
	// WriteCapabilities let a restore recreate every file as it was: DAC_OVERRIDE to write into
	// directories of any owner and mode, CHOWN to give entries their owners back, FOWNER to set
	// modes and mtimes of files it no longer owns, FSETID to keep setuid and setgid bits.
	WriteCapabilities = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}
)

// Mount is a claim mounted into the agent's container.
type Mount struct {
	// Name of the pod volume.
	Name string
	// ClaimName is the PersistentVolumeClaim behind the volume.
	ClaimName string
	// SubPath is the directory of the volume that is mounted; the kubelet creates it if missing.
	SubPath string
	// MountPath is where the agent sees it.
	MountPath string
	// ReadOnly mounts the claim read-only, both the volume and the container's mount.
	ReadOnly bool
}

// Spec is what differs between the agent's Jobs.
type Spec struct {
	// Namespace and Name of the Job; the name is deterministic, derived from what it is for.
	Namespace, Name string
	// Owner is the Job's controller reference; nil for a Job that must outlive its object's
	// garbage collection, such as a cleanup.
	Owner *metav1.OwnerReference
	// Labels go on the Job and its pods, next to the managed-by label the informers select on.
	Labels map[string]string
	// Image runs the agent; its entrypoint is the backup-controller binary.
	Image string
	// Args follow "agent" on the command line.
	Args []string
	// Mounts are the claims the agent sees.
	Mounts []Mount
	// Storage is how the agent reaches the archive's storage: its flags follow Args, and its
	// claims, environment and volumes join the pod's.
	Storage Access
	// Capabilities the agent keeps; every other one is dropped.
	Capabilities []corev1.Capability
	// NodeName, when set, is the only node the pod may run on: the node that has a
	// ReadWriteOnce claim attached.
	NodeName string
	// Settings bound the Job and size its pod; unset fields take the API's defaults.
	Settings platformv1.JobSettings
	// TTLSecondsAfterFinished, when set, lets Kubernetes delete the finished Job.
	TTLSecondsAfterFinished *int32
	// ServiceAccountName, when set, runs the pod as that ServiceAccount with its token mounted:
	// the agent runs hooks and source commands in the application's pod with it. Otherwise the
	// pod gets no API credentials at all.
	ServiceAccountName string
	// APIServer is the environment that tells the agent where the API server is, for a pod
	// with ServiceAccountName (see controller.Deps.AgentAPIServer).
	APIServer []corev1.EnvVar
}

// New builds the agent Job that spec describes. Pods are never restarted in place: a failed
// attempt is a new pod, so every attempt leaves its own termination message.
func New(spec Spec) *batchv1.Job {
	labels := map[string]string{platformv1.LabelManagedBy: platformv1.ManagedByValue}
	maps.Copy(labels, spec.Labels)

	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	for _, m := range slices.Concat(spec.Mounts, spec.Storage.Mounts) {
		volumes = append(volumes, corev1.Volume{
			Name: m.Name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: m.ClaimName, ReadOnly: m.ReadOnly,
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath, SubPath: m.SubPath, ReadOnly: m.ReadOnly})
	}
	for _, v := range spec.Storage.Volumes {
		volumes = append(volumes, corev1.Volume{Name: v.Name, VolumeSource: *v.Source.DeepCopy()})
		mounts = append(mounts, corev1.VolumeMount{Name: v.Name, MountPath: v.MountPath, ReadOnly: true})
	}

	deadline, backoff, resources := Settings(spec.Settings)
	podSC, containerSC := securityContexts(spec.Settings.AgentSecurityContext, spec.Capabilities)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: spec.Namespace,
			Name:      spec.Name,
			Labels:    maps.Clone(labels),
		},
		Spec: batchv1.JobSpec{
			ActiveDeadlineSeconds:   ptr.To(deadline),
			BackoffLimit:            ptr.To(backoff),
			TTLSecondsAfterFinished: spec.TTLSecondsAfterFinished,
			PodFailurePolicy:        podFailurePolicy(),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					// Unless it runs commands in the application's pod, the agent only touches
					// files: it has no use for API credentials.
					ServiceAccountName:           spec.ServiceAccountName,
					AutomountServiceAccountToken: ptr.To(spec.ServiceAccountName != ""),
					// Nor for the environment variables of every Service in the namespace.
					EnableServiceLinks: ptr.To(false),
					SecurityContext:    podSC,
					Affinity:           nodeAffinity(spec.NodeName),
					Volumes:            volumes,
					Containers: []corev1.Container{{
						Name:                     ContainerName,
						Image:                    spec.Image,
						Args:                     slices.Concat([]string{"agent"}, spec.Args, spec.Storage.Args),
						Env:                      slices.Concat(spec.Storage.Env, spec.APIServer),
						Resources:                resources,
						VolumeMounts:             mounts,
						TerminationMessagePath:   corev1.TerminationMessagePathDefault,
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
						SecurityContext:          containerSC,
					}},
				},
			},
		},
	}
	if spec.Owner != nil {
		job.OwnerReferences = []metav1.OwnerReference{*spec.Owner}
	}
	return job
}

// securityContexts are the agent pod's and container's security contexts. By default the agent
// runs as root with every capability dropped but caps, which Kubernetes grants to root only.
// With as set it runs as that user with no capabilities at all, which Pod Security "restricted"
// admits: it then reads and writes what that user may.
func securityContexts(as *platformv1.AgentSecurityContext, caps []corev1.Capability) (*corev1.PodSecurityContext, *corev1.SecurityContext) {
	container := &corev1.SecurityContext{
		Privileged:               ptr.To(false),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(false),
		Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"},
			Add:  slices.Clone(caps),
		},
	}
	seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	if as == nil {
		// No fsGroup: the kubelet would change the group of every file on the volume,
		// rewriting the very ownership a backup must record.
		return &corev1.PodSecurityContext{
			RunAsUser:      ptr.To[int64](0),
			RunAsGroup:     ptr.To[int64](0),
			RunAsNonRoot:   ptr.To(false),
			SeccompProfile: seccomp,
		}, container
	}
	container.RunAsNonRoot = ptr.To(true)
	container.Capabilities.Add = nil
	return &corev1.PodSecurityContext{
		RunAsUser:      ptr.To(as.RunAsUser),
		RunAsGroup:     as.RunAsGroup,
		FSGroup:        as.FSGroup,
		RunAsNonRoot:   ptr.To(true),
		SeccompProfile: seccomp,
	}, container
}

// Settings returns a run's deadline, retries and pod resources, with the API's defaults for what
// the spec leaves unset.
func Settings(s platformv1.JobSettings) (activeDeadlineSeconds int64, backoffLimit int32, resources corev1.ResourceRequirements) {
	activeDeadlineSeconds = platformv1.DefaultActiveDeadlineSeconds
	if s.ActiveDeadlineSeconds != nil {
		activeDeadlineSeconds = *s.ActiveDeadlineSeconds
	}
	backoffLimit = platformv1.DefaultBackoffLimit
	if s.BackoffLimit != nil {
		backoffLimit = *s.BackoffLimit
	}
	if s.Resources != nil {
		resources = *s.Resources.DeepCopy()
	}
	return activeDeadlineSeconds, backoffLimit, resources
}

// podFailurePolicy fails the Job at once when retrying cannot help: a command line the agent
// rejects, or an archive that failed verification or is unsafe to extract. A pod that was evicted
// or preempted does not count against the backoff limit: the next attempt may well succeed.
func podFailurePolicy() *batchv1.PodFailurePolicy {
	return &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{
			Action: batchv1.PodFailurePolicyActionFailJob,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
				ContainerName: ptr.To(ContainerName),
				Operator:      batchv1.PodFailurePolicyOnExitCodesOpIn,
				Values:        []int32{agent.ExitUsage, agent.ExitIntegrity, agent.ExitRefused},
			},
		},
		{
			Action: batchv1.PodFailurePolicyActionIgnore,
			OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{
				Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			}},
		},
	}}
}

// nodeAffinity pins the pod to node by name; matching the field rather than a label is what the
// DaemonSet controller does too, since node labels can be changed by anyone who manages nodes.
func nodeAffinity(node string) *corev1.Affinity {
	if node == "" {
		return nil
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{
					Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}},
			}},
		},
	}}
}

// IsControlledBy reports whether obj's controller reference names the object with uid.
func IsControlledBy(obj metav1.Object, uid string) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && string(ref.UID) == uid
}

// ArchiveExtension is the file name suffix of an archive with compression c, encrypted or not,
// or an error for a compression the agent does not know. With fileName, it is that of a file
// archive restored as fileName (see FileArchiveName): ".dump.zst" instead of ".tar.zst".
func ArchiveExtension(c platformv1.Compression, encrypted bool, fileName string) (string, error) {
	if archive.Compression(c).Extension() == "" {
		return "", fmt.Errorf("unknown compression %q: use zstd, gzip or none", c)
	}
	return archive.Format{Compression: archive.Compression(c), Encrypted: encrypted, FileName: fileName}.Extension(), nil
}

// FileArchiveName is the name b's archive is restored as when it is a file archive (a source
// command of format file), with the API's default; empty for a tar archive.
func FileArchiveName(b *platformv1.Backup) string {
	if b.Spec.Source == nil || b.Spec.Source.Command == nil || b.Spec.Source.Command.Format != platformv1.StreamFormatFile {
		return ""
	}
	if name := b.Spec.Source.Command.FileName; name != "" {
		return name
	}
	return platformv1.DefaultStreamFileName
}

// ArchiveFormatArgs are the agent's restore and verify arguments that say what b's archive
// holds: --format file and --file-name for a file archive, none for a tar. The agent is always
// told; it never guesses from the archive's name.
func ArchiveFormatArgs(b *platformv1.Backup) []string {
	if name := FileArchiveName(b); name != "" {
		return []string{"--format", string(archive.FormatFile), "--file-name", name}
	}
	return nil
}

// StorageClaim returns the claim and directory that hold archives, with the API's default claim
// when storage is unset.
func StorageClaim(storage *platformv1.Storage) (claimName, subPath string) {
	if storage == nil || storage.PersistentVolumeClaim == nil || storage.PersistentVolumeClaim.ClaimName == "" {
		return platformv1.DefaultStorageClaimName, ""
	}
	return storage.PersistentVolumeClaim.ClaimName, strings.Trim(storage.PersistentVolumeClaim.SubPath, "/")
}

// ConflictMessage says why job, which has the name of the Job of the kind object called name,
// cannot be used, and what to do.
func ConflictMessage(job *batchv1.Job, kind, name string) string {
	ref := metav1.GetControllerOf(job)
	if ref != nil && ref.Kind == kind && ref.Name == name {
		return fmt.Sprintf("Job %s belongs to an earlier %s named %s, not to this one; nothing was run. Kubernetes deletes that Job with its %s: create this %s again once the Job is gone, or under another name.",
			job.Name, kind, name, kind, kind)
	}
	return fmt.Sprintf("Job %s exists but does not belong to this %s; nothing was run. Delete that Job, or create this %s under another name.", job.Name, kind, kind)
}
