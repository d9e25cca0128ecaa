// +k8s:deepcopy-gen=package
// +groupName=platform.example.com

// Package v1 is version v1 of the platform.example.com API: BackupPolicy (intent: when, what,
// how long to keep), Backup (one archive of one PersistentVolumeClaim at one point in time) and
// Restore (recovery of a Completed Backup into a PersistentVolumeClaim).
package v1
