package controller

import (
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	snapshotinformers "github.com/kubernetes-csi/external-snapshotter/client/v8/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"platform.example.com/backup-operator/pkg/generated/clientset/versioned"
	informers "platform.example.com/backup-operator/pkg/generated/informers/externalversions"
	"platform.example.com/backup-operator/pkg/metrics"
)

// Deps are what every controller is built from. The binary builds them once from real clients;
// tests build them from fake clientsets and a fake clock.
type Deps struct {
	// KubeClient talks to the core and batch APIs.
	KubeClient kubernetes.Interface
	// Client talks to the platform.example.com API.
	Client versioned.Interface
	// Informers watch BackupPolicies, Backups and Restores.
	Informers informers.SharedInformerFactory
	// OwnedInformers watch only the Jobs and Pods the operator made: they are filtered by the
	// operator's managed-by label, so a cluster's other workloads never fill the cache.
	OwnedInformers kubeinformers.SharedInformerFactory
	// ClaimInformers watch PersistentVolumeClaims, which users create and label.
	ClaimInformers kubeinformers.SharedInformerFactory
	// SnapshotClient talks to the snapshot.storage.k8s.io API; nil when the cluster does not
	// serve it, so that Backups with copyMethod Snapshot fail with what to install.
	SnapshotClient snapshotclient.Interface
	// SnapshotInformers watch the VolumeSnapshots the operator made (filtered like
	// OwnedInformers); nil when SnapshotClient is.
	SnapshotInformers snapshotinformers.SharedInformerFactory
	// Recorder emits the Events that tell each object's story in kubectl describe.
	Recorder record.EventRecorder
	// Clock is the time every decision is made against.
	Clock clock.PassiveClock
	// AgentImage is the image the backup, restore and cleanup Jobs run the archive agent from:
	// the controller's own image unless the operator is told otherwise.
	AgentImage string
	// AgentAPIServer is how agent pods that call the API server (hooks and source commands)
	// reach it: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT as the controller's own pod
	// has them, empty when the controller runs outside the cluster. Where the kubernetes
	// Service does not route (a node without kube-proxy), the controller's address does.
	AgentAPIServer []corev1.EnvVar
	// Metrics records what the controllers do for Prometheus; nil records nothing.
	Metrics *metrics.Metrics
}
