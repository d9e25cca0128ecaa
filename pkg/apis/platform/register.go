// Package platform holds the API group name shared by every version of the backup operator's API.
package platform

// GroupName is the API group of BackupPolicy, Backup and Restore.
const GroupName = "platform.example.com"
