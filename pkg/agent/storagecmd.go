package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
	"platform.example.com/backup-operator/pkg/storage/s3"
	"platform.example.com/backup-operator/pkg/storage/volume"
)

func (r *StorageCheckResult) status() *Status { return &r.Status }
func (r *StorageListResult) status() *Status  { return &r.Status }

// storageCommands are the subcommands of `agent storage`: the commands about a whole storage
// rather than one archive.
var storageCommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"check": runStorageCheck,
	"list":  runStorageList,
}

// runStorage runs `agent storage SUBCOMMAND`.
func runStorage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if run, ok := storageCommands[args[0]]; ok {
			return run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprint(stderr, usage)
	got := "no subcommand"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		got = fmt.Sprintf("unknown subcommand %q", args[0])
	}
	termLog, explicit := findFlag(args, "termination-log")
	if !explicit {
		termLog = DefaultTerminationLog
	}
	return report(stdout, stderr, termLog, explicit, &Status{Operation: "storage"}, archive.InvalidArgument,
		fmt.Errorf("%s after storage: use storage check or storage list", got))
}

// runStorageCheck proves a storage usable the way backups and restores will use it, before any
// of them runs: one flag, --read-only, or --s3-read-only which every command shares, keeps the
// check from writing on either backend.
func runStorageCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	res := &StorageCheckResult{}
	c := newCommand(OpStorageCheck, "--location DIR|s3://BUCKET[/PREFIX] [--read-only]", res, stdout, stderr).withStorage()
	var readOnly bool
	c.fs.StringVar(&res.Location, "location", "", "the storage's root: the directory where its claim is mounted, or s3://BUCKET[/PREFIX] of the server the --s3-* flags describe")
	c.fs.BoolVar(&readOnly, "read-only", false, "prove reading only and write nothing, for a ReadOnly storage (the same as --s3-read-only)")
	if code := c.parse(args); code >= 0 {
		return code
	}
	backend, prefix, err := c.storageRoot(ctx, res.Location, readOnly || c.s3.ReadOnly)
	if err != nil {
		return c.finish(err)
	}
	found, err := backend.Check(ctx, prefix)
	if found != nil {
		res.CheckResult = *found
	}
	return c.finish(err)
}

// runStorageList prints one storage.Listed JSON line for each complete archive below a
// storage location, then the result with their number. The list is for the controller, which
// reads it from the pod's log and compares its length with the result's count, so that a log
// that was cut never passes for the whole list. Listing never writes, whatever the storage's
// access mode.
func runStorageList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	res := &StorageListResult{}
	c := newCommand(OpStorageList, "--location DIR|s3://BUCKET[/PREFIX]", res, stdout, stderr).withStorage()
	c.fs.StringVar(&res.Location, "location", "", "the directory, or s3://BUCKET[/PREFIX] of the server the --s3-* flags describe, below which archives are listed")
	if code := c.parse(args); code >= 0 {
		return code
	}
	backend, prefix, err := c.storageRoot(ctx, res.Location, true)
	if err != nil {
		return c.finish(err)
	}
	listed, err := backend.Manifests(ctx, prefix)
	if err != nil {
		return c.finish(err)
	}
	enc := json.NewEncoder(stdout)
	for i := range listed {
		// Nobody reading the list needs the names of the files that changed during the backup,
		// and they would make a long list longer than the log the kubelet keeps.
		listed[i].Manifest.ChangedFileList = nil
		if err := enc.Encode(&listed[i]); err != nil {
			return c.finish(&archive.Error{Reason: archive.Internal, Msg: "cannot print the list of archives", Err: err})
		}
	}
	res.Archives = len(listed)
	return c.finish(nil)
}

// storageRoot chooses the backend of a storage's root, as storage does for an archive's
// location: s3://BUCKET[/PREFIX] is a bucket of the S3 server the --s3-* flags describe, whose
// prefix it returns; anything else is the directory where the storage's claim is mounted.
func (c *command) storageRoot(ctx context.Context, location string, readOnly bool) (storage.Backend, string, error) {
	if location == "" {
		return nil, "", &archive.Error{Reason: archive.InvalidArgument, Msg: "no storage location: pass a directory or s3://BUCKET[/PREFIX]"}
	}
	if !strings.HasPrefix(location, s3.Scheme) {
		if readOnly {
			return volume.NewReadOnly(location), "", nil
		}
		return volume.New(location), "", nil
	}
	bucket, prefix, ok := s3.ParseLocation(location)
	if !ok {
		return nil, "", &archive.Error{Reason: archive.InvalidArgument, Msg: fmt.Sprintf("location %q is not s3://BUCKET[/PREFIX]", location)}
	}
	b, err := c.s3Backend(ctx, bucket, readOnly)
	return b, strings.Trim(prefix, "/"), err
}
