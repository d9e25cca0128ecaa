package backuppolicy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/tools/cache"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
)

// Indexes of the informer caches. Without them every sync scans all the Backups and all the
// claims of its namespace, and a thousand policies due at once spent most of the controller's
// CPU in those scans (bench/schedule --cpuprofile).
const (
	// backupsByPolicy indexes Backups by namespace and the full policy name in their spec.
	backupsByPolicy = "backuppolicy.platform.example.com/policy"
	// claimsByLabel indexes claims by namespace and each of their label pairs.
	claimsByLabel = "backuppolicy.platform.example.com/label"
)

func policyKey(namespace, name string) string { return namespace + "/" + name }

func labelKey(namespace, key, value string) string { return namespace + "/" + key + "=" + value }

func indexBackupByPolicy(obj interface{}) ([]string, error) {
	b, ok := obj.(*platformv1.Backup)
	if !ok || b.Spec.PolicyName == "" {
		return nil, nil
	}
	return []string{policyKey(b.Namespace, b.Spec.PolicyName)}, nil
}

func indexClaimByLabel(obj interface{}) ([]string, error) {
	claim, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(claim.Labels))
	for k, v := range claim.Labels {
		keys = append(keys, labelKey(claim.Namespace, k, v))
	}
	return keys, nil
}

// addIndexers adds the indexes to informers that have not started yet.
func addIndexers(backups, claims cache.SharedIndexInformer) error {
	if err := backups.AddIndexers(cache.Indexers{backupsByPolicy: indexBackupByPolicy}); err != nil {
		return fmt.Errorf("indexing Backups by policy: %w", err)
	}
	if err := claims.AddIndexers(cache.Indexers{claimsByLabel: indexClaimByLabel}); err != nil {
		return fmt.Errorf("indexing PersistentVolumeClaims by label: %w", err)
	}
	return nil
}

// claimCandidates returns the claims of a namespace that may match selector: those carrying one
// of the values of its narrowest equality requirement, or every claim of the namespace when the
// selector has none (only existence or exclusion requirements). Callers still match each one.
func claimCandidates(index cache.Indexer, namespace string, selector labels.Selector) ([]interface{}, error) {
	reqs, selectable := selector.Requirements()
	var best []interface{}
	found := false
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
		default:
			continue
		}
		var objs []interface{}
		for _, v := range r.Values().UnsortedList() {
			more, err := index.ByIndex(claimsByLabel, labelKey(namespace, r.Key(), v))
			if err != nil {
				return nil, err
			}
			objs = append(objs, more...)
		}
		if !found || len(objs) < len(best) {
			best, found = objs, true
		}
	}
	if found {
		return best, nil
	}
	if !selectable {
		// labels.Nothing(): no claim matches.
		return nil, nil
	}
	return index.ByIndex(cache.NamespaceIndex, namespace)
}
