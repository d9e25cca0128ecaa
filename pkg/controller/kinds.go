package controller

import (
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// JobKind is the group and kind of the batch Jobs the operator runs.
var JobKind = schema.GroupKind{Group: batchv1.GroupName, Kind: "Job"}
