package backuppolicy

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kubeinformers "k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/controller"
	"platform.example.com/backup-operator/pkg/generated/clientset/versioned/fake"
	informers "platform.example.com/backup-operator/pkg/generated/informers/externalversions"
	"platform.example.com/backup-operator/pkg/metrics"
	"platform.example.com/backup-operator/pkg/names"
)

// indexedController is a controller whose caches hold claims and backups, added through the
// informers' indexers as the informers would.
func indexedController(t *testing.T, claims []*corev1.PersistentVolumeClaim, backups []*platformv1.Backup) *Controller {
	t.Helper()
	kubeInformers := kubeinformers.NewSharedInformerFactory(kubefake.NewSimpleClientset(), 0)
	platformInformers := informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)
	c, err := NewController(controller.Deps{
		Informers: platformInformers, OwnedInformers: kubeInformers, ClaimInformers: kubeInformers,
		Recorder: record.NewFakeRecorder(10), Metrics: metrics.New(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range claims {
		if err := c.claimIndex.Add(claim); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range backups {
		if err := c.backupIndex.Add(b); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func claimIn(namespace, name string, labels map[string]string) *corev1.PersistentVolumeClaim {
	c := claim(name, labels)
	c.Namespace = namespace
	return c
}

// scan is what selectedClaims answers without an index: every live claim of the namespace that
// the selector matches, by name.
func scan(claims []*corev1.PersistentVolumeClaim, namespace string, selector labels.Selector) []string {
	var out []string
	for _, c := range claims {
		if c.Namespace == namespace && c.DeletionTimestamp == nil && selector.Matches(labels.Set(c.Labels)) {
			out = append(out, c.Name)
		}
	}
	sort.Strings(out)
	return out
}

func TestSelectedClaimsAnswersAsAScanWould(t *testing.T) {
	deleting := claimIn(ns, "deleting", map[string]string{"app": "postgres", "tier": "db"})
	deleting.DeletionTimestamp = &metav1.Time{Time: topOfTheHour()}
	claims := []*corev1.PersistentVolumeClaim{
		claimIn(ns, "pg-0", map[string]string{"app": "postgres", "tier": "db", "zone": "a"}),
		claimIn(ns, "pg-1", map[string]string{"app": "postgres", "tier": "db", "zone": "b"}),
		claimIn(ns, "redis", map[string]string{"app": "redis", "tier": "cache", "zone": "a"}),
		claimIn(ns, "mysql", map[string]string{"app": "mysql", "tier": "db"}),
		claimIn(ns, "unlabeled", nil),
		claimIn("other", "pg-0", map[string]string{"app": "postgres", "tier": "db", "zone": "a"}),
		deleting,
	}
	c := indexedController(t, claims, nil)

	for _, tc := range []struct {
		name     string
		selector metav1.LabelSelector
		want     []string
	}{
		{"one label", metav1.LabelSelector{MatchLabels: map[string]string{"app": "postgres"}}, []string{"pg-0", "pg-1"}},
		{"two labels", metav1.LabelSelector{MatchLabels: map[string]string{"tier": "db", "zone": "a"}}, []string{"pg-0"}},
		{"no claim has the value", metav1.LabelSelector{MatchLabels: map[string]string{"app": "mongo"}}, nil},
		{"in", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"redis", "mysql", "mongo"}}}}, []string{"mysql", "redis"}},
		{"in and not in", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"db"}},
			{Key: "zone", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"b"}}}}, []string{"mysql", "pg-0"}},
		{"label and exists", metav1.LabelSelector{MatchLabels: map[string]string{"tier": "db"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "zone", Operator: metav1.LabelSelectorOpExists}}}, []string{"pg-0", "pg-1"}},
		{"exists only", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "zone", Operator: metav1.LabelSelectorOpExists}}}, []string{"pg-0", "pg-1", "redis"}},
		{"does not exist only", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "zone", Operator: metav1.LabelSelectorOpDoesNotExist}}}, []string{"mysql", "unlabeled"}},
		{"not in only", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"postgres"}}}}, []string{"mysql", "redis", "unlabeled"}},
		{"empty selects all", metav1.LabelSelector{}, []string{"mysql", "pg-0", "pg-1", "redis", "unlabeled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := metav1.LabelSelectorAsSelector(&tc.selector)
			if err != nil {
				t.Fatal(err)
			}
			if want := scan(claims, ns, sel); !reflect.DeepEqual(want, tc.want) {
				t.Fatalf("the table is wrong: a scan selects %v, the table says %v", want, tc.want)
			}
			got, err := c.selectedClaims(ns, sel)
			if err != nil {
				t.Fatal(err)
			}
			var gotNames []string
			for _, claim := range got {
				if claim.Namespace != ns {
					t.Errorf("selected %s/%s from another namespace", claim.Namespace, claim.Name)
				}
				gotNames = append(gotNames, claim.Name)
			}
			if !reflect.DeepEqual(gotNames, tc.want) {
				t.Errorf("selected %v, want %v", gotNames, tc.want)
			}
		})
	}

	got, err := c.selectedClaims(ns, labels.Nothing())
	if err != nil || len(got) != 0 {
		t.Errorf("labels.Nothing() selected %d claims (err %v), want none", len(got), err)
	}
}

func TestSelectedClaimsFollowsRelabeling(t *testing.T) {
	pg := claimIn(ns, "pg-0", map[string]string{"app": "postgres"})
	c := indexedController(t, []*corev1.PersistentVolumeClaim{pg}, nil)
	sel := labels.SelectorFromSet(labels.Set{"app": "postgres"})

	relabeled := pg.DeepCopy()
	relabeled.Labels = map[string]string{"app": "archived"}
	if err := c.claimIndex.Update(relabeled); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.selectedClaims(ns, sel); len(got) != 0 {
		t.Fatalf("a claim relabeled away is still selected: %v", got[0].Labels)
	}
	if err := c.claimIndex.Update(pg); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.selectedClaims(ns, sel); len(got) != 1 {
		t.Fatalf("a claim labeled back is not selected")
	}
}

func TestPolicyBackupsNeedTheSpecAndTheLabel(t *testing.T) {
	long := strings.Repeat("p", 80)
	mine := policyBackup("mine", "pg-0", platformv1.BackupCompleted, thePriorHour())
	otherPolicy := policyBackup("other-policy", "pg-0", platformv1.BackupCompleted, thePriorHour())
	otherPolicy.Spec.PolicyName, otherPolicy.Labels[platformv1.LabelPolicy] = "daily", "daily"
	// Made by hand, naming the policy but without its label: retention must never prune it.
	byHand := policyBackup("by-hand", "pg-0", platformv1.BackupCompleted, thePriorHour())
	delete(byHand.Labels, platformv1.LabelPolicy)
	elsewhere := policyBackup("elsewhere", "pg-0", platformv1.BackupCompleted, thePriorHour())
	elsewhere.Namespace = "other"
	longOne := policyBackup("long-one", "pg-0", platformv1.BackupCompleted, thePriorHour())
	longOne.Spec.PolicyName, longOne.Labels[platformv1.LabelPolicy] = long, names.Join(long)
	c := indexedController(t, nil, []*platformv1.Backup{mine, otherPolicy, byHand, elsewhere, longOne})

	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{"hourly", []string{"mine"}},
		{"daily", []string{"other-policy"}},
		{long, []string{"long-one"}},
		{"none", nil},
	} {
		p := hourlyPolicy()
		p.Name = tc.policy
		got, err := c.policyBackups(p)
		if err != nil {
			t.Fatal(err)
		}
		var gotNames []string
		for _, b := range got {
			gotNames = append(gotNames, b.Name)
		}
		sort.Strings(gotNames)
		if !reflect.DeepEqual(gotNames, tc.want) {
			t.Errorf("policy %.10s...: Backups %v, want %v", tc.policy, gotNames, tc.want)
		}
	}
}
