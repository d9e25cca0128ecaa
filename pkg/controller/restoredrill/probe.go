package restoredrill

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller/agentjob"
)

// ProbeContainerName is the name of the probe's container.
const ProbeContainerName = "probe"

// Defaults of a probe, which the CRD schema sets too.
const (
	// DefaultProbeTimeoutSeconds bounds a probe: ten minutes.
	DefaultProbeTimeoutSeconds int64 = 600
	// DefaultProbeMountPath is where the restored copy is mounted.
	DefaultProbeMountPath = "/data"
)

// maxLogTail is how much of a probe's termination message the status keeps.
const maxLogTail = 1024

// probeStep makes the probe Job of dc and reads its result.
func (c *Controller) probeStep(ctx context.Context, d *platformv1.RestoreDrill, run *platformv1.DrillRun, dc *platformv1.DrillClaim, now time.Time, out *outcome) error {
	job, lost, err := agentjob.Get(ctx, c.jobs, c.deps.KubeClient, d.Namespace, dc.ProbeJobName, false)
	if err != nil {
		return err
	}
	if job == nil && !lost {
		job, err = c.deps.KubeClient.BatchV1().Jobs(d.Namespace).Create(ctx, probeJob(d, run, dc), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			job, err = c.deps.KubeClient.BatchV1().Jobs(d.Namespace).Get(ctx, dc.ProbeJobName, metav1.GetOptions{})
		}
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			verdict(dc, platformv1.ReasonProbeFailed, fmt.Sprintf("Creating probe Job %s was refused: %v. Fix spec.probe", dc.ProbeJobName, err))
			dc.Stage = platformv1.DrillCleaningUp
			return nil
		}
		if err != nil {
			return err
		}
	}
	if !agentjob.IsControlledBy(job, string(d.UID)) {
		verdict(dc, platformv1.ReasonScratchConflict, agentjob.ConflictMessage(job, "RestoreDrill", d.Name))
		dc.ProbeJobName = ""
		dc.Stage = platformv1.DrillCleaningUp
		return nil
	}
	pods, err := agentjob.PodsOf(c.pods, job, labels.SelectorFromSet(labels.Set{platformv1.LabelDrill: d.Name, platformv1.LabelDrillRun: run.ID, platformv1.LabelPVC: dc.PVCName}))
	if err != nil {
		return err
	}
	obs := agentjob.Observe(job, pods)
	if !obs.State.Finished() {
		return nil
	}
	finished := now
	if obs.FinishTime != nil {
		finished = obs.FinishTime.Time
	}
	dc.ProbeDuration = &metav1.Duration{Duration: finished.Sub(job.CreationTimestamp.Time).Round(time.Second)}
	term := probeTermination(job, pods)
	if term != nil {
		dc.ProbeExitCode = ptr.To(term.ExitCode)
		dc.ProbeLogTail = tail(term.Message)
	}
	if obs.State == agentjob.StateSucceeded {
		c.pass(d, run, dc, finished, out)
		return nil
	}
	dc.Stage = platformv1.DrillCleaningUp
	switch {
	case obs.JobReason == batchv1.JobReasonDeadlineExceeded:
		verdict(dc, platformv1.ReasonProbeTimedOut, fmt.Sprintf("The probe on the copy of claim %s did not finish within timeoutSeconds=%d; it was stopped. Raise spec.probe.timeoutSeconds or make the probe faster", dc.PVCName, probeTimeout(d.Spec.Probe)))
	case term != nil:
		verdict(dc, platformv1.ReasonProbeFailed, fmt.Sprintf("The probe on the copy of claim %s exited with %d: the restored data did not pass; its output ends: %s", dc.PVCName, term.ExitCode, oneLine(dc.ProbeLogTail)))
	default:
		verdict(dc, platformv1.ReasonProbeFailed, fmt.Sprintf("The probe Job %s failed (%s: %s) before its container ended; kubectl describe job %s says more", job.Name, obs.JobReason, obs.JobMessage, job.Name))
	}
	return nil
}

// probeJob is the Job that runs the probe with the scratch claim mounted read-write: one pod, no
// retries, bounded by the probe's timeout, no service account token, no privileges.
func probeJob(d *platformv1.RestoreDrill, run *platformv1.DrillRun, dc *platformv1.DrillClaim) *batchv1.Job {
	p := d.Spec.Probe
	lbls := runLabels(d, run.ID, dc.PVCName)
	lbls[agentjob.LabelComponent] = ComponentProbe
	mountPath := p.MountPath
	if mountPath == "" {
		mountPath = DefaultProbeMountPath
	}
	sc := &corev1.SecurityContext{}
	if p.SecurityContext != nil {
		sc = p.SecurityContext.DeepCopy()
	}
	// The CRD refuses both already; objects can come from clients that skip validation.
	sc.Privileged, sc.AllowPrivilegeEscalation = ptr.To(false), ptr.To(false)
	var resources corev1.ResourceRequirements
	if p.Resources != nil {
		resources = *p.Resources.DeepCopy()
	}
	timeout := probeTimeout(p)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: d.Namespace, Name: dc.ProbeJobName,
			Labels:          maps.Clone(lbls),
			OwnerReferences: []metav1.OwnerReference{ownerRef(d)},
		},
		Spec: batchv1.JobSpec{
			ActiveDeadlineSeconds: ptr.To(timeout),
			BackoffLimit:          ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(lbls)},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					Volumes: []corev1.Volume{{
						Name: "restored",
						VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
							ClaimName: dc.ScratchClaimName,
						}},
					}},
					Containers: []corev1.Container{{
						Name:            ProbeContainerName,
						Image:           p.Image,
						Command:         slices.Clone(p.Command),
						Args:            slices.Clone(p.Args),
						Env:             slices.Clone(p.Env),
						Resources:       resources,
						SecurityContext: sc,
						VolumeMounts:    []corev1.VolumeMount{{Name: "restored", MountPath: mountPath}},
						// A failing probe's last output lands in its termination message, so the
						// controller reads it without reading logs.
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
				},
			},
		},
	}
	return job
}

func probeTimeout(p *platformv1.DrillProbe) int64 {
	if p == nil || p.TimeoutSeconds == nil {
		return DefaultProbeTimeoutSeconds
	}
	return *p.TimeoutSeconds
}

// probeTermination is how the probe container of the latest pod of job ended, or nil.
func probeTermination(job *batchv1.Job, pods []*corev1.Pod) *corev1.ContainerStateTerminated {
	var latest *corev1.ContainerStateTerminated
	for _, pod := range pods {
		if !agentjob.IsControlledBy(pod, string(job.UID)) {
			continue
		}
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name != ProbeContainerName || s.State.Terminated == nil {
				continue
			}
			if latest == nil || latest.FinishedAt.Before(&s.State.Terminated.FinishedAt) {
				latest = s.State.Terminated
			}
		}
	}
	return latest
}

// tail is the end of a probe's output, at most maxLogTail bytes, cut at a line start if it can.
func tail(s string) string {
	s = strings.TrimRight(s, "\n")
	if len(s) <= maxLogTail {
		return s
	}
	s = s[len(s)-maxLogTail:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return s
}

// oneLine is the last line of s, for a condition's message.
func oneLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}
