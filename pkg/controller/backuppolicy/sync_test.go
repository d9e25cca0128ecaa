package backuppolicy

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubeinformers "k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
	informers "platform.example.com/backup-operator/pkg/generated/informers/externalversions"
	"platform.example.com/backup-operator/pkg/metrics"
)

const ns = "db"

// Moments around one hour, as in the upstream CronJob controller's tests.
func topOfTheHour() time.Time      { return time.Date(2026, 5, 19, 10, 0, 0, 0, time.UTC) }
func justBeforeTheHour() time.Time { return topOfTheHour().Add(-time.Minute) }
func justAfterTheHour() time.Time  { return topOfTheHour().Add(time.Minute) }
func thePriorHour() time.Time      { return topOfTheHour().Add(-time.Hour) }

// hourlyPolicy backs up claims labeled app=postgres every hour; it was created two hours before
// the top of the hour and last ran the hour before.
func hourlyPolicy() *platformv1.BackupPolicy {
	return &platformv1.BackupPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hourly", UID: "policy-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(topOfTheHour().Add(-2 * time.Hour))},
		Spec: platformv1.BackupPolicySpec{
			Schedule:  "0 * * * *",
			Target:    platformv1.BackupTarget{PVCSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "postgres"}}},
			Retention: &platformv1.RetentionPolicy{KeepLast: ptr.To(int32(2))},
			BackupRunSettings: platformv1.BackupRunSettings{
				Compression: platformv1.CompressionZstd,
				Storage:     &platformv1.Storage{PersistentVolumeClaim: &platformv1.StorageVolumeClaim{ClaimName: "backup-storage"}},
			},
		},
		Status: platformv1.BackupPolicyStatus{LastScheduleTime: &metav1.Time{Time: thePriorHour()}},
	}
}

func claim(name string, labels map[string]string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

func postgresClaims() []*corev1.PersistentVolumeClaim {
	return []*corev1.PersistentVolumeClaim{
		claim("data-db-0", map[string]string{"app": "postgres"}),
		claim("data-db-1", map[string]string{"app": "postgres"}),
		claim("cache", map[string]string{"app": "redis"}),
	}
}

// policyBackup is a Backup of the policy for a claim, taken at t.
func policyBackup(name, pvc string, phase platformv1.BackupPhase, t time.Time) *platformv1.Backup {
	return &platformv1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(name + "-uid"),
			CreationTimestamp: metav1.NewTime(t),
			Labels:            map[string]string{platformv1.LabelPolicy: "hourly", platformv1.LabelPVC: pvc}},
		Spec:   platformv1.BackupSpec{PVCName: pvc, PolicyName: "hourly"},
		Status: platformv1.BackupStatus{Phase: phase, StartTime: &metav1.Time{Time: t}, CompletionTime: &metav1.Time{Time: t.Add(time.Minute)}},
	}
}

type fixture struct {
	t        *testing.T
	now      time.Time
	policy   *platformv1.BackupPolicy
	claims   []*corev1.PersistentVolumeClaim
	backups  []*platformv1.Backup
	reactors []func(*fake.Clientset)

	client    *fake.Clientset
	recorder  *record.FakeRecorder
	metrics   *metrics.Metrics
	informers informers.SharedInformerFactory
	ctrl      *Controller
}

func newFixture(t *testing.T, now time.Time) *fixture {
	return &fixture{t: t, now: now, policy: hourlyPolicy(), claims: postgresClaims()}
}

// sync runs one sync of the policy against fake clients whose informer caches hold exactly the
// fixture's objects, and returns the requeue and error. Actions taken are in f.writes(). The
// metrics carry over from one sync to the next, as in one process.
func (f *fixture) sync() (time.Duration, error) {
	f.t.Helper()
	var objects []runtime.Object
	objects = append(objects, f.policy)
	for _, b := range f.backups {
		objects = append(objects, b)
	}
	var kubeObjects []runtime.Object
	for _, c := range f.claims {
		kubeObjects = append(kubeObjects, c)
	}
	f.client = fake.NewSimpleClientset(objects...)
	for _, r := range f.reactors {
		r(f.client)
	}
	kubeClient := kubefake.NewSimpleClientset(kubeObjects...)
	platformInformers := informers.NewSharedInformerFactory(f.client, 0)
	kubeInformers := kubeinformers.NewSharedInformerFactory(kubeClient, 0)
	f.recorder = record.NewFakeRecorder(100)
	if f.metrics == nil {
		f.metrics = metrics.New()
	}
	f.informers = platformInformers
	ctrl, err := NewController(controller.Deps{
		KubeClient: kubeClient, Client: f.client,
		Informers: platformInformers, OwnedInformers: kubeInformers, ClaimInformers: kubeInformers,
		Recorder: f.recorder, Clock: clocktesting.NewFakePassiveClock(f.now), Metrics: f.metrics,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.ctrl = ctrl
	for _, obj := range objects {
		var err error
		switch o := obj.(type) {
		case *platformv1.BackupPolicy:
			err = platformInformers.Platform().V1().BackupPolicies().Informer().GetIndexer().Add(o)
		case *platformv1.Backup:
			err = platformInformers.Platform().V1().Backups().Informer().GetIndexer().Add(o)
		}
		if err != nil {
			f.t.Fatal(err)
		}
	}
	for _, c := range f.claims {
		if err := kubeInformers.Core().V1().PersistentVolumeClaims().Informer().GetIndexer().Add(c); err != nil {
			f.t.Fatal(err)
		}
	}
	return ctrl.sync(context.Background(), f.policy.Namespace, f.policy.Name)
}

// writes describes the API writes of the last sync, such as "create backups hourly-data-db-0-...".
func (f *fixture) writes() []string {
	var out []string
	// Create and update actions share one interface: tell them apart by verb.
	for _, a := range f.client.Actions() {
		switch a.GetVerb() {
		case "create":
			obj, _ := meta.Accessor(a.(clienttesting.CreateAction).GetObject())
			out = append(out, fmt.Sprintf("create %s %s", a.GetResource().Resource, obj.GetName()))
		case "update":
			obj, _ := meta.Accessor(a.(clienttesting.UpdateAction).GetObject())
			out = append(out, fmt.Sprintf("update %s/%s %s", a.GetResource().Resource, a.GetSubresource(), obj.GetName()))
		case "delete":
			out = append(out, fmt.Sprintf("delete %s %s", a.GetResource().Resource, a.(clienttesting.DeleteAction).GetName()))
		}
	}
	return out
}

// status is the policy status the last sync wrote.
func (f *fixture) status() platformv1.BackupPolicyStatus {
	f.t.Helper()
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			return a.(clienttesting.UpdateAction).GetObject().(*platformv1.BackupPolicy).Status
		}
	}
	f.t.Fatal("the sync wrote no status")
	return platformv1.BackupPolicyStatus{}
}

// created returns the Backups the last sync asked to create, whether or not the create succeeded.
func (f *fixture) created() []*platformv1.Backup {
	var out []*platformv1.Backup
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "create" {
			if b, ok := a.(clienttesting.CreateAction).GetObject().(*platformv1.Backup); ok {
				out = append(out, b)
			}
		}
	}
	return out
}

func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (f *fixture) expectEvent(prefix string) {
	f.t.Helper()
	for _, e := range f.events() {
		if strings.HasPrefix(e, prefix) {
			return
		}
	}
	f.t.Fatalf("no event starting %q", prefix)
}

func (f *fixture) expectWrites(want ...string) {
	f.t.Helper()
	got := f.writes()
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		f.t.Fatalf("API writes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// serverBackups are the Backups on the fake API server after the last sync: those it started
// with, plus the ones the sync created, less the ones it deleted.
func (f *fixture) serverBackups() []*platformv1.Backup {
	f.t.Helper()
	obj, err := f.client.Tracker().List(platformv1.SchemeGroupVersion.WithResource("backups"), platformv1.SchemeGroupVersion.WithKind("Backup"), ns)
	if err != nil {
		f.t.Fatal(err)
	}
	list := obj.(*platformv1.BackupList)
	out := make([]*platformv1.Backup, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// nextPass syncs the policy again once the informer cache has caught up with the API server, as
// it has when the policy comes back from the end of the queue: the cache then holds the Backups
// the last sync created, and no longer those it deleted. The policy's status is left as it is.
func (f *fixture) nextPass() (time.Duration, error) {
	f.t.Helper()
	f.backups = f.serverBackups()
	return f.sync()
}

// expectStarted checks that the last sync started a run and left it to the next sync to record:
// no error, requeue after recordRunAfter, and no status write.
func (f *fixture) expectStarted(requeue time.Duration, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
	if requeue != recordRunAfter {
		f.t.Fatalf("requeue after %s, want recordRunAfter (%s): the next sync records the run", requeue, recordRunAfter)
	}
	for _, w := range f.writes() {
		if strings.HasPrefix(w, "update") {
			f.t.Fatalf("the sync that started a run wrote %q; it must write its Backups only", w)
		}
	}
}

// startAndRecord runs both syncs of a due run and returns the second's requeue. It checks only
// that the first created Backups and recorded nothing: tests of the two passes check each.
func (f *fixture) startAndRecord() time.Duration {
	f.t.Helper()
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	if len(f.created()) == 0 {
		f.t.Fatal("the first sync created no Backup")
	}
	requeue, err = f.nextPass()
	if err != nil {
		f.t.Fatal(err)
	}
	return requeue
}

// expectEvents checks the events of the last sync, in order: each starts with its prefix.
func (f *fixture) expectEvents(prefixes ...string) {
	f.t.Helper()
	got := f.events()
	ok := len(got) == len(prefixes)
	for i := 0; ok && i < len(got); i++ {
		ok = strings.HasPrefix(got[i], prefixes[i])
	}
	if !ok {
		f.t.Fatalf("events:\n  %s\nwant (prefixes):\n  %s", strings.Join(got, "\n  "), strings.Join(prefixes, "\n  "))
	}
}

// skewSamples is how many runs the schedule skew histogram has seen.
func (f *fixture) skewSamples() float64 {
	return f.metrics.Sample("backup_operator_schedule_skew_seconds")
}

func readyOf(t *testing.T, s platformv1.BackupPolicyStatus) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(s.Conditions, platformv1.ConditionReady)
	if c == nil {
		t.Fatal("no Ready condition")
	}
	return *c
}

// The name of the hourly run at the top of the hour: minutes since the epoch.
var topRun = fmt.Sprint(topOfTheHour().Unix() / 60)

// Backup names of the run at the top of the hour.
var (
	db0Top = "hourly-data-db-0-" + topRun
	db1Top = "hourly-data-db-1-" + topRun
)

func TestDueRunCreatesOneBackupPerSelectedClaim(t *testing.T) {
	f := newFixture(t, justAfterTheHour())

	// First pass: the Backups, and nothing else.
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	f.expectWrites("create backups "+db0Top, "create backups "+db1Top)
	f.expectEvents()
	b := f.created()[0]
	if b.Spec.PVCName != "data-db-0" || b.Spec.PolicyName != "hourly" || b.Spec.Compression != platformv1.CompressionZstd ||
		b.Spec.Storage == nil || b.Spec.Storage.PersistentVolumeClaim.ClaimName != "backup-storage" {
		t.Fatalf("the Backup does not carry the policy's settings: %+v", b.Spec)
	}
	if b.Labels[platformv1.LabelPolicy] != "hourly" || b.Labels[platformv1.LabelPVC] != "data-db-0" || b.Annotations[platformv1.AnnotationScheduledTime] != "2026-05-19T10:00:00Z" {
		t.Fatalf("labels %v, annotations %v", b.Labels, b.Annotations)
	}
	if len(b.OwnerReferences) != 0 {
		t.Fatal("a policy must not own its Backups: deleting it would delete data")
	}

	// Second pass: the record, and no create.
	f.now = justAfterTheHour().Add(2 * time.Second)
	requeue, err = f.nextPass()
	if err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvents("Normal BackupsCreated Created 2 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z: " + db0Top + ", " + db1Top)
	s := f.status()
	if !s.LastScheduleTime.Time.Equal(topOfTheHour()) || !s.NextScheduleTime.Time.Equal(topOfTheHour().Add(time.Hour)) || s.ObservedGeneration != 1 {
		t.Fatalf("status %+v", s)
	}
	if len(s.Active) != 2 || s.Active[0].Name != db0Top || s.Active[1].Name != db1Top {
		t.Fatalf("active %v, want the run's Backups", s.Active)
	}
	if c := readyOf(t, s); c.Status != metav1.ConditionTrue || c.Reason != ReasonScheduled {
		t.Fatalf("Ready = %+v", c)
	}
	if want := topOfTheHour().Add(time.Hour).Sub(f.now) + nextSyncDelta; requeue != want {
		t.Fatalf("requeue after %s, want %s (the next scheduled time)", requeue, want)
	}
}

func TestNothingDueWritesNothing(t *testing.T) {
	f := newFixture(t, justBeforeTheHour())
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	// The first sync records the plan; a second one at a later moment with nothing due must
	// not touch the API at all.
	f.policy.Status = f.status()
	f.now = justBeforeTheHour().Add(30 * time.Second)
	requeue, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	f.expectWrites()
	f.expectEvents()
	if want := 30*time.Second + nextSyncDelta; requeue != want {
		t.Fatalf("requeue after %s, want %s", requeue, want)
	}
}

func TestTheSameRunIsNeverMadeTwice(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.startAndRecord()
	f.policy.Status = f.status()
	f.events()
	f.now = justAfterTheHour().Add(10 * time.Second)
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites()
	f.expectEvents()
}

func TestConcurrencyPolicy(t *testing.T) {
	running := policyBackup("hourly-data-db-0-old", "data-db-0", platformv1.BackupRunning, thePriorHour())
	tests := []struct {
		policy      platformv1.ConcurrencyPolicy
		start       []string // writes of the first pass
		startEvents []string
		events      []string // of the second pass
		active      []string
	}{
		{"", []string{"create backups " + db1Top}, nil,
			[]string{
				"Normal AlreadyActive Skipped claim data-db-0 for the run scheduled for 2026-05-19T10:00:00Z: Backup hourly-data-db-0-old is still Running (concurrencyPolicy Forbid)",
				"Normal BackupsCreated Created 1 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z: " + db1Top,
			},
			[]string{running.Name, db1Top}},
		{platformv1.ConcurrencyForbid, []string{"create backups " + db1Top}, nil,
			[]string{"Normal AlreadyActive Skipped claim data-db-0", "Normal BackupsCreated Created 1 Backup(s)"},
			[]string{running.Name, db1Top}},
		{platformv1.ConcurrencyAllow, []string{"create backups " + db0Top, "create backups " + db1Top}, nil,
			[]string{"Normal BackupsCreated Created 2 Backup(s)"},
			[]string{db0Top, running.Name, db1Top}},
		{platformv1.ConcurrencyReplace, []string{"delete backups " + running.Name, "create backups " + db0Top, "create backups " + db1Top},
			// Said when it happens: the second pass no longer sees the deleted Backup.
			[]string{"Normal ReplacedActiveBackup Deleted active Backup(s) hourly-data-db-0-old of claim data-db-0 to start the run scheduled for 2026-05-19T10:00:00Z (concurrencyPolicy Replace)"},
			[]string{"Normal BackupsCreated Created 2 Backup(s)"},
			[]string{db0Top, db1Top}},
	}
	for _, tc := range tests {
		t.Run(string(tc.policy), func(t *testing.T) {
			f := newFixture(t, justAfterTheHour())
			f.policy.Spec.ConcurrencyPolicy = tc.policy
			f.backups = []*platformv1.Backup{running}
			requeue, err := f.sync()
			f.expectStarted(requeue, err)
			f.expectWrites(tc.start...)
			f.expectEvents(tc.startEvents...)

			if _, err := f.nextPass(); err != nil {
				t.Fatal(err)
			}
			f.expectWrites("update backuppolicies/status hourly")
			f.expectEvents(tc.events...)
			s := f.status()
			var active []string
			for _, a := range s.Active {
				active = append(active, a.Name)
			}
			if !reflect.DeepEqual(active, tc.active) || !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
				t.Fatalf("status active %v, want %v; last schedule %v", active, tc.active, s.LastScheduleTime)
			}
		})
	}
}

// A second pass whose cache shows an earlier active Backup but not yet the run's own must ask the
// API server before it skips (Forbid) or replaces (Replace): the claim's Backup of this run is
// there, made by the first pass.
func TestConcurrencyPolicyFindsTheRunsOwnBackupBeforeTheCacheDoes(t *testing.T) {
	for _, policy := range []platformv1.ConcurrencyPolicy{platformv1.ConcurrencyForbid, platformv1.ConcurrencyReplace} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t, justAfterTheHour())
			f.policy.Spec.ConcurrencyPolicy = policy
			f.backups = []*platformv1.Backup{policyBackup("hourly-data-db-0-old", "data-db-0", platformv1.BackupRunning, thePriorHour())}
			f.reactors = append(f.reactors, func(c *fake.Clientset) {
				for _, name := range []string{db0Top, db1Top} {
					pvc := strings.TrimSuffix(strings.TrimPrefix(name, "hourly-"), "-"+topRun)
					if err := c.Tracker().Add(policyBackup(name, pvc, platformv1.BackupPending, topOfTheHour())); err != nil {
						t.Fatal(err)
					}
				}
			})
			requeue, err := f.sync()
			if err != nil {
				t.Fatal(err)
			}
			if requeue == recordRunAfter {
				t.Fatal("the sync that finds all the run's Backups records the run")
			}
			// data-db-1 has no earlier Backup: its create is tried, and finds the Backup.
			f.expectWrites("create backups "+db1Top, "update backuppolicies/status hourly")
			f.expectEvents("Normal BackupsCreated Created 2 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z: " + db0Top + ", " + db1Top)
			if s := f.status(); !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
				t.Fatalf("last schedule %v", s.LastScheduleTime)
			}
		})
	}
}

// A run retried after one of its creates failed finds its own Backup of the other claim active.
// That Backup is the run's, not an earlier one: Forbid must not skip the claim, Replace must not
// delete it.
func TestRetriedRunKeepsItsOwnBackups(t *testing.T) {
	for _, policy := range []platformv1.ConcurrencyPolicy{"", platformv1.ConcurrencyForbid, platformv1.ConcurrencyAllow, platformv1.ConcurrencyReplace} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t, justAfterTheHour())
			f.policy.Spec.ConcurrencyPolicy = policy
			f.reactors = append(f.reactors, func(c *fake.Clientset) {
				c.PrependReactor("create", "backups", func(a clienttesting.Action) (bool, runtime.Object, error) {
					if a.(clienttesting.CreateAction).GetObject().(*platformv1.Backup).Spec.PVCName == "data-db-1" {
						return true, nil, errors.New("etcd is on fire")
					}
					return false, nil, nil
				})
			})
			if _, err := f.sync(); err == nil {
				t.Fatal("a failed create must return an error, so the run is retried with backoff")
			}
			f.expectWrites("create backups "+db0Top, "create backups "+db1Top)
			f.expectEvents("Warning FailedCreate Could not create Backup " + db1Top + " of claim data-db-1")

			// The retry: the cache holds the run's Backup of data-db-0, still Pending.
			f.reactors = nil
			f.now = f.now.Add(time.Second)
			requeue, err := f.nextPass()
			f.expectStarted(requeue, err)
			f.expectWrites("create backups " + db1Top)
			f.expectEvents()

			if _, err := f.nextPass(); err != nil {
				t.Fatal(err)
			}
			f.expectWrites("update backuppolicies/status hourly")
			f.expectEvents("Normal BackupsCreated Created 2 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z: " + db0Top + ", " + db1Top)
			if s := f.status(); !s.LastScheduleTime.Time.Equal(topOfTheHour()) || len(s.Active) != 2 {
				t.Fatalf("last schedule %v, active %v", s.LastScheduleTime, s.Active)
			}
			if got := f.skewSamples(); got != 1 {
				t.Fatalf("%v schedule skew samples, want 1: the run started once", got)
			}
		})
	}
}

func TestReplaceDeletesByUID(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.policy.Spec.ConcurrencyPolicy = platformv1.ConcurrencyReplace
	f.backups = []*platformv1.Backup{policyBackup("hourly-data-db-0-old", "data-db-0", platformv1.BackupPending, thePriorHour())}
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	for _, a := range f.client.Actions() {
		if d, ok := a.(clienttesting.DeleteActionImpl); ok {
			if pre := d.GetDeleteOptions().Preconditions; pre == nil || pre.UID == nil || *pre.UID != "hourly-data-db-0-old-uid" {
				t.Fatalf("delete without the Backup's UID as precondition: %+v", d.GetDeleteOptions())
			}
			return
		}
	}
	t.Fatal("no delete")
}

func TestSuspendedPolicyStartsNothing(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.policy.Spec.Suspend = ptr.To(true)
	requeue, err := f.sync()
	if err != nil || requeue != 0 {
		t.Fatalf("requeue %s, err %v; want no requeue", requeue, err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	s := f.status()
	if c := readyOf(t, s); c.Status != metav1.ConditionFalse || c.Reason != ReasonSuspended || s.NextScheduleTime != nil {
		t.Fatalf("Ready %+v, next %v", c, s.NextScheduleTime)
	}

	// On resume hours later, only the most recent missed time runs.
	f.policy.Spec.Suspend = ptr.To(false)
	f.policy.Status = s
	f.now = topOfTheHour().Add(5*time.Hour + time.Minute)
	requeue, err = f.sync()
	f.expectStarted(requeue, err)
	resumed := fmt.Sprint(topOfTheHour().Add(5*time.Hour).Unix() / 60)
	f.expectWrites("create backups hourly-data-db-0-"+resumed, "create backups hourly-data-db-1-"+resumed)
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	if s := f.status(); !s.LastScheduleTime.Time.Equal(topOfTheHour().Add(5*time.Hour)) || readyOf(t, s).Reason != ReasonScheduled {
		t.Fatalf("last schedule %v, Ready %+v", s.LastScheduleTime, readyOf(t, s))
	}
}

func TestInvalidSpecIsReportedOnceAndNotRetried(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*platformv1.BackupPolicy)
		reason string
	}{
		{"schedule", func(p *platformv1.BackupPolicy) { p.Spec.Schedule = "every night" }, ReasonInvalidSchedule},
		{"time zone prefix", func(p *platformv1.BackupPolicy) { p.Spec.Schedule = "CRON_TZ=UTC 0 2 * * *" }, ReasonInvalidSchedule},
		{"time zone", func(p *platformv1.BackupPolicy) { p.Spec.TimeZone = ptr.To("Mars/Olympus_Mons") }, ReasonInvalidTimeZone},
		{"selector", func(p *platformv1.BackupPolicy) {
			p.Spec.Target.PVCSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}}
		}, ReasonInvalidSelector},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, justAfterTheHour())
			tc.mutate(f.policy)
			requeue, err := f.sync()
			if err != nil || requeue != 0 {
				t.Fatalf("requeue %s, err %v; an invalid spec must not be retried in a loop", requeue, err)
			}
			f.expectWrites("update backuppolicies/status hourly")
			s := f.status()
			if c := readyOf(t, s); c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
				t.Fatalf("Ready = %+v, want False/%s", c, tc.reason)
			}
			f.expectEvent("Warning " + tc.reason)

			f.policy.Status = s
			if _, err := f.sync(); err != nil {
				t.Fatal(err)
			}
			f.expectWrites()
			if ev := f.events(); len(ev) != 0 {
				t.Fatalf("the same invalid spec was reported again: %v", ev)
			}
		})
	}
}

func TestRunPastTheStartingDeadlineIsSkipped(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.policy.Spec.StartingDeadlineSeconds = ptr.To(int64(30))
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvent("Warning MissedSchedule Skipped the run scheduled for 2026-05-19T10:00:00Z: it could not start within startingDeadlineSeconds=30")
	s := f.status()
	if s.LastMissedTime == nil || !s.LastMissedTime.Time.Equal(topOfTheHour()) || !s.LastScheduleTime.Time.Equal(thePriorHour()) {
		t.Fatalf("last missed %v, last scheduled %v", s.LastMissedTime, s.LastScheduleTime)
	}
	f.policy.Status = s
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites()
	if ev := f.events(); len(ev) != 0 {
		t.Fatalf("the skip was reported again: %v", ev)
	}
}

// A run that started within its deadline is recorded as run, though the sync that records it
// comes after the deadline.
func TestRunStartedWithinTheDeadlineIsRecordedAfterIt(t *testing.T) {
	f := newFixture(t, topOfTheHour().Add(25*time.Second))
	f.policy.Spec.StartingDeadlineSeconds = ptr.To(int64(30))
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	f.expectWrites("create backups "+db0Top, "create backups "+db1Top)

	f.now = topOfTheHour().Add(35 * time.Second)
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvents("Normal BackupsCreated Created 2 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z")
	if s := f.status(); s.LastMissedTime != nil || !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
		t.Fatalf("last missed %v, last scheduled %v: the run was made, not skipped", s.LastMissedTime, s.LastScheduleTime)
	}
}

func TestManyMissedRunsGiveOneWarningAndOneRun(t *testing.T) {
	f := newFixture(t, topOfTheHour().Add(10*24*time.Hour+time.Minute))
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	if n := len(f.created()); n != 2 {
		t.Fatalf("created %d Backups, want one run of 2", n)
	}
	f.expectEvents()
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvents("Warning TooManyMissedTimes About 241 scheduled runs", "Normal BackupsCreated Created 2")
}

func TestSelectorMatchingNothingWarnsAndDoesNotLoop(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.claims = []*corev1.PersistentVolumeClaim{claim("cache", map[string]string{"app": "redis"})}
	requeue, err := f.sync()
	if err != nil || requeue == 0 {
		t.Fatalf("requeue %s, err %v; want no error and the next scheduled time", requeue, err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvent("Warning NoMatchingPVCs Nothing backed up for the run scheduled for 2026-05-19T10:00:00Z")
	s := f.status()
	if c := readyOf(t, s); c.Reason != ReasonNoMatchingPVCs || c.Status != metav1.ConditionFalse || !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
		t.Fatalf("Ready %+v, last schedule %v", c, s.LastScheduleTime)
	}
}

// A run that creates nothing is started and recorded by the same sync.
func TestRunThatCreatesNothingTakesOneSync(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(*fixture)
		events  []string
	}{
		{"no claim selected", func(f *fixture) {
			f.claims = []*corev1.PersistentVolumeClaim{claim("cache", map[string]string{"app": "redis"})}
		}, []string{"Warning NoMatchingPVCs Nothing backed up for the run scheduled for 2026-05-19T10:00:00Z"}},
		{"every claim skipped by Forbid", func(f *fixture) {
			f.backups = []*platformv1.Backup{
				policyBackup("hourly-data-db-0-old", "data-db-0", platformv1.BackupRunning, thePriorHour()),
				policyBackup("hourly-data-db-1-old", "data-db-1", platformv1.BackupPending, thePriorHour()),
			}
		}, []string{
			"Normal AlreadyActive Skipped claim data-db-0 for the run scheduled for 2026-05-19T10:00:00Z: Backup hourly-data-db-0-old is still Running",
			"Normal AlreadyActive Skipped claim data-db-1 for the run scheduled for 2026-05-19T10:00:00Z: Backup hourly-data-db-1-old is still Pending",
		}},
		{"every Backup already there", func(f *fixture) {
			f.backups = []*platformv1.Backup{
				policyBackup(db0Top, "data-db-0", platformv1.BackupPending, topOfTheHour()),
				policyBackup(db1Top, "data-db-1", platformv1.BackupRunning, topOfTheHour()),
			}
		}, []string{"Normal BackupsCreated Created 2 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z: " + db0Top + ", " + db1Top}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, justAfterTheHour())
			tc.prepare(f)
			requeue, err := f.sync()
			if err != nil {
				t.Fatal(err)
			}
			if want := topOfTheHour().Add(time.Hour).Sub(f.now) + nextSyncDelta; requeue != want {
				t.Fatalf("requeue after %s, want %s (the next scheduled time)", requeue, want)
			}
			f.expectWrites("update backuppolicies/status hourly")
			f.expectEvents(tc.events...)
			if s := f.status(); !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
				t.Fatalf("last schedule %v", s.LastScheduleTime)
			}
		})
	}
}

func TestRunNowAnnotationRunsOncePerValue(t *testing.T) {
	f := newFixture(t, justBeforeTheHour())
	f.policy.Annotations = map[string]string{platformv1.AnnotationRunNow: "drill-1"}

	// First pass: the Backups only; the token is not recorded yet.
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	created := f.created()
	if len(created) != 2 || !strings.HasPrefix(created[0].Name, "hourly-data-db-0-now-") {
		t.Fatalf("run-now created %v", created)
	}
	if created[0].Annotations[platformv1.AnnotationScheduledTime] != justBeforeTheHour().Format(time.RFC3339) {
		t.Fatalf("run-now Backup annotated %v", created[0].Annotations)
	}
	f.expectEvents()

	// Second pass: the token, and no create.
	f.now = justBeforeTheHour().Add(time.Second)
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvents(`Normal BackupsCreated Created 2 Backup(s) for the run requested by platform.example.com/run-now="drill-1": ` + created[0].Name + ", " + created[1].Name)
	s := f.status()
	if s.LastRunNowToken != "drill-1" || !s.LastScheduleTime.Time.Equal(thePriorHour()) || len(s.Active) != 2 {
		t.Fatalf("token %q, last schedule %v, active %v: run-now must not consume a scheduled run", s.LastRunNowToken, s.LastScheduleTime, s.Active)
	}
	if got := f.skewSamples(); got != 0 {
		t.Fatalf("%v schedule skew samples: a run-now run has no scheduled time", got)
	}

	// The same token again: nothing.
	f.policy.Status = s
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites()
	f.expectEvents()

	// A new token is a new run; like every run it waits for active Backups (Forbid).
	for _, b := range f.backups {
		b.Status.Phase = platformv1.BackupCompleted
	}
	f.policy.Annotations[platformv1.AnnotationRunNow] = "drill-2"
	requeue, err = f.sync()
	f.expectStarted(requeue, err)
	if again := f.created(); len(again) != 2 || again[0].Name == created[0].Name {
		t.Fatalf("a new token created %v", again)
	}
}

// A run-now request and a scheduled run due in the same sync are both started by it, and both
// recorded by the next.
func TestRunNowAndAScheduledRunDueTogether(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.policy.Annotations = map[string]string{platformv1.AnnotationRunNow: "drill-1"}
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	var names []string
	for _, b := range f.created() {
		names = append(names, b.Name)
	}
	if len(names) != 4 || !strings.HasPrefix(names[0], "hourly-data-db-0-now-") || names[2] != db0Top || names[3] != db1Top {
		t.Fatalf("created %v, want both runs' Backups", names)
	}
	f.expectEvents()

	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvents("Normal BackupsCreated Created 2 Backup(s) for the run requested by", "Normal BackupsCreated Created 2 Backup(s) for the run scheduled for")
	if s := f.status(); s.LastRunNowToken != "drill-1" || !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
		t.Fatalf("token %q, last schedule %v", s.LastRunNowToken, s.LastScheduleTime)
	}
}

// The second pass may come before the informer has seen the first pass's Backups: the creates
// then find them, and the run is recorded all the same.
func TestSecondPassBeforeTheCacheSeesTheBackups(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	onServer := f.serverBackups()

	// The cache is as before the first pass; the API server holds the Backups.
	f.reactors = append(f.reactors, func(c *fake.Clientset) {
		for _, b := range onServer {
			if err := c.Tracker().Add(b); err != nil {
				t.Fatal(err)
			}
		}
	})
	if _, err := f.sync(); err != nil {
		t.Fatalf("AlreadyExists must count as the run's Backup: %v", err)
	}
	f.expectWrites("create backups "+db0Top, "create backups "+db1Top, "update backuppolicies/status hourly")
	f.expectEvents("Normal BackupsCreated Created 2 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z: " + db0Top + ", " + db1Top)
	if s := f.status(); !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
		t.Fatalf("last schedule %v", s.LastScheduleTime)
	}
	if n := len(f.serverBackups()); n != 2 {
		t.Fatalf("%d Backups on the server, want the run's 2", n)
	}
	if got := f.skewSamples(); got != 1 {
		t.Fatalf("%v schedule skew samples, want 1", got)
	}
}

// The process may die, or the Lease move, between the two passes: whichever replica syncs the
// policy next records the run from the Backups it finds, and makes nothing twice.
func TestCrashBetweenThePassesCompletesTheRunOnce(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	f.expectWrites("create backups "+db0Top, "create backups "+db1Top)

	// Another replica: fresh metrics and a fresh controller, a cache filled from the API server.
	f.metrics = nil
	f.now = justAfterTheHour().Add(15 * time.Second)
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites("update backuppolicies/status hourly")
	f.expectEvents("Normal BackupsCreated Created 2 Backup(s) for the run scheduled for 2026-05-19T10:00:00Z: " + db0Top + ", " + db1Top)
	if got := f.skewSamples(); got != 0 {
		t.Fatalf("%v schedule skew samples on the new replica: the run started on the old one", got)
	}
	s := f.status()
	if !s.LastScheduleTime.Time.Equal(topOfTheHour()) {
		t.Fatalf("last schedule %v", s.LastScheduleTime)
	}

	f.policy.Status = s
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	f.expectWrites()
	f.expectEvents()
}

func TestFailedCreateIsRetriedWithoutConsumingTheRun(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.reactors = append(f.reactors, func(c *fake.Clientset) {
		c.PrependReactor("create", "backups", func(a clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("etcd is on fire")
		})
	})
	// Nothing created: the sync records what it can, but not the run.
	if _, err := f.sync(); err == nil {
		t.Fatal("a failed create must return an error, so the run is retried with backoff")
	}
	f.expectWrites("create backups "+db0Top, "create backups "+db1Top, "update backuppolicies/status hourly")
	s := f.status()
	if !s.LastScheduleTime.Time.Equal(thePriorHour()) {
		t.Fatalf("last schedule moved to %v though the run's Backups are missing", s.LastScheduleTime)
	}
	f.expectEvents("Warning FailedCreate Could not create Backup "+db0Top, "Warning FailedCreate Could not create Backup "+db1Top)
	if got := f.skewSamples(); got != 0 {
		t.Fatalf("%v schedule skew samples for a run that did not start", got)
	}
}

// The skew between the scheduled time and the run's Backups is observed by the sync that
// creates them, once per run.
func TestScheduleSkewIsObservedOncePerRun(t *testing.T) {
	f := newFixture(t, topOfTheHour().Add(3*time.Second))
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	if got := f.skewSamples(); got != 1 {
		t.Fatalf("%v schedule skew samples after the creates, want 1", got)
	}
	f.now = topOfTheHour().Add(9 * time.Second)
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	if got := f.skewSamples(); got != 1 {
		t.Fatalf("%v schedule skew samples after the record, want 1", got)
	}
	families, err := f.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == "backup_operator_schedule_skew_seconds" {
			if got := mf.GetMetric()[0].GetHistogram().GetSampleSum(); got != 3 {
				t.Fatalf("skew %vs, want 3s: the time of the creates, not of the record", got)
			}
		}
	}
}
func TestRetentionDeletesOnlyWhatNoRuleKeeps(t *testing.T) {
	f := newFixture(t, justBeforeTheHour())
	day := func(d int) time.Time { return topOfTheHour().AddDate(0, 0, -d) }
	otherPolicy := policyBackup("other-data-db-0", "data-db-0", platformv1.BackupCompleted, day(30))
	otherPolicy.Spec.PolicyName = "other"
	otherPolicy.Labels[platformv1.LabelPolicy] = "other"
	f.backups = []*platformv1.Backup{
		policyBackup("c1", "data-db-0", platformv1.BackupCompleted, day(5)),
		policyBackup("c2", "data-db-0", platformv1.BackupCompleted, day(4)),
		policyBackup("c3", "data-db-0", platformv1.BackupCompleted, day(3)),
		policyBackup("c4", "data-db-0", platformv1.BackupCompleted, day(2)),
		policyBackup("running", "data-db-0", platformv1.BackupRunning, day(10)),
		policyBackup("db1-a", "data-db-1", platformv1.BackupCompleted, day(9)),
		policyBackup("db1-b", "data-db-1", platformv1.BackupCompleted, day(8)),
		otherPolicy,
	}
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, w := range f.writes() {
		if strings.HasPrefix(w, "delete") {
			deleted = append(deleted, w)
		}
	}
	sort.Strings(deleted)
	if want := []string{"delete backups c1", "delete backups c2"}; !reflect.DeepEqual(deleted, want) {
		t.Fatalf("deleted %v, want %v", deleted, want)
	}
	f.expectEvent("Normal CleanupTriggered Deleted 2 old Backup(s) of claim data-db-0 (keepLast=2, keepFailed=3): c1, c2")
	s := f.status()
	if len(s.Active) != 1 || s.Active[0].Name != "running" || !s.LastSuccessfulTime.Time.Equal(day(2).Add(time.Minute)) {
		t.Fatalf("active %v, last success %v", s.Active, s.LastSuccessfulTime)
	}
}

func TestRetentionDeletesNothingWhenTheTimeZoneIsInvalid(t *testing.T) {
	f := newFixture(t, justBeforeTheHour())
	f.policy.Spec.TimeZone = ptr.To("Nowhere/Special")
	f.policy.Spec.Retention = &platformv1.RetentionPolicy{KeepDaily: ptr.To(int32(1))}
	f.backups = []*platformv1.Backup{
		policyBackup("c1", "data-db-0", platformv1.BackupCompleted, thePriorHour().Add(-48*time.Hour)),
		policyBackup("c2", "data-db-0", platformv1.BackupCompleted, thePriorHour()),
	}
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	for _, w := range f.writes() {
		if strings.HasPrefix(w, "delete") {
			t.Fatalf("retention deleted with a time zone it cannot read: %s", w)
		}
	}
}

func TestPolicyOfBackupUsesTheFullPolicyName(t *testing.T) {
	long := strings.Repeat("p", 80)
	b := &platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x", Labels: map[string]string{platformv1.LabelPolicy: "shortened"}},
		Spec: platformv1.BackupSpec{PolicyName: long}}
	if key, ok := policyOfBackup(b); !ok || key != ns+"/"+long {
		t.Fatalf("policyOfBackup = %q, %v", key, ok)
	}
	if _, ok := policyOfBackup(&platformv1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manual"}}); ok {
		t.Fatal("a Backup made by hand belongs to no policy")
	}
}

func TestSyncRecordsMetrics(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	day := func(d int) time.Time { return topOfTheHour().AddDate(0, 0, -d) }
	f.backups = []*platformv1.Backup{
		policyBackup("c1", "data-db-0", platformv1.BackupCompleted, day(3)),
		policyBackup("c2", "data-db-0", platformv1.BackupCompleted, day(2)),
		policyBackup("c3", "data-db-0", platformv1.BackupCompleted, day(1)),
	}
	requeue, err := f.sync()
	f.expectStarted(requeue, err)
	if got := f.metrics.Sample("backup_operator_schedule_skew_seconds"); got != 1 {
		t.Errorf("schedule skew samples = %v, want 1 for the run made a minute late", got)
	}
	if got := f.metrics.Sample("backup_operator_retention_deleted_backups_total"); got != 0 {
		t.Errorf("retention deletions = %v in the sync that starts the run, want 0: the next one prunes", got)
	}
	if _, err := f.nextPass(); err != nil {
		t.Fatal(err)
	}
	if got := f.metrics.Sample("backup_operator_schedule_skew_seconds"); got != 1 {
		t.Errorf("schedule skew samples = %v after the record, want still 1", got)
	}
	if got := f.metrics.Sample("backup_operator_retention_deleted_backups_total"); got != 1 {
		t.Errorf("retention deletions = %v, want 1 (keepLast=2 of 3)", got)
	}
	if got := f.metrics.Sample("backup_operator_last_successful_backup_timestamp_seconds"); got != float64(day(1).Add(time.Minute).Unix()) {
		t.Errorf("last success = %v, want the newest completion", got)
	}
}

// scheduleSeries is the number of series of the policy's interval and creation time; the alert
// on the age of the last success needs both.
func (f *fixture) scheduleSeries() int {
	f.t.Helper()
	n, err := testutil.GatherAndCount(f.metrics.Registry(),
		"backup_operator_policy_schedule_interval_seconds", "backup_operator_policy_created_timestamp_seconds")
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func TestSyncRecordsTheScheduleInterval(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.startAndRecord()
	if got := f.metrics.Sample("backup_operator_policy_schedule_interval_seconds"); got != 3600 {
		t.Errorf("interval = %v, want 3600 for an hourly schedule", got)
	}
	if got := f.metrics.Sample("backup_operator_policy_created_timestamp_seconds"); got != float64(f.policy.CreationTimestamp.Unix()) {
		t.Errorf("created = %v, want the policy's creation time %d", got, f.policy.CreationTimestamp.Unix())
	}

	// A policy that never succeeded is scheduled all the same: the alert measures it from its
	// creation.
	f.policy.Status = f.status()
	f.policy.Spec.Schedule = "0 2 * * 1-5"
	f.now = time.Date(2026, 5, 23, 12, 0, 0, 0, time.UTC) // a Saturday
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if got := f.metrics.Sample("backup_operator_policy_schedule_interval_seconds"); got != 72*3600 {
		t.Errorf("interval = %v on a Saturday, want 72h from Friday's run to Monday's", got)
	}
}

func TestScheduleSeriesAreDroppedWhileNoRunsAreScheduled(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*platformv1.BackupPolicy)
	}{
		{"suspended", func(p *platformv1.BackupPolicy) { p.Spec.Suspend = ptr.To(true) }},
		{"invalid schedule", func(p *platformv1.BackupPolicy) { p.Spec.Schedule = "every night" }},
		{"invalid time zone", func(p *platformv1.BackupPolicy) { p.Spec.TimeZone = ptr.To("Mars/Olympus_Mons") }},
		{"invalid selector", func(p *platformv1.BackupPolicy) {
			p.Spec.Target.PVCSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, justAfterTheHour())
			f.startAndRecord()
			if n := f.scheduleSeries(); n != 2 {
				t.Fatalf("%d schedule series for a scheduled policy, want 2", n)
			}
			f.policy.Status = f.status()
			tc.mutate(f.policy)
			if _, err := f.sync(); err != nil {
				t.Fatal(err)
			}
			if n := f.scheduleSeries(); n != 0 {
				t.Fatalf("%d schedule series left: a policy that schedules no runs must raise no \"no recent backup\" alert", n)
			}
		})
	}
}

func TestDeletedPolicyDropsItsScheduleSeries(t *testing.T) {
	f := newFixture(t, justAfterTheHour())
	f.startAndRecord()
	if n := f.scheduleSeries(); n != 2 {
		t.Fatalf("%d schedule series for a scheduled policy, want 2", n)
	}
	if err := f.informers.Platform().V1().BackupPolicies().Informer().GetIndexer().Delete(f.policy); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ctrl.sync(context.Background(), f.policy.Namespace, f.policy.Name); err != nil {
		t.Fatal(err)
	}
	if n := f.scheduleSeries(); n != 0 {
		t.Fatalf("%d schedule series left for a deleted policy", n)
	}
}
