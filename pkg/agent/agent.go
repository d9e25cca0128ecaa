// Package agent is the data-path subcommand that the operator's Jobs run:
// `backup-controller agent backup|restore|verify|delete`. Each run prints one
// JSON result on stdout and, in a Pod, writes it to the termination message
// so the controller can read it from the Pod status.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	platformv1 "platform.example.com/backup-operator/pkg/apis/platform/v1"
	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
	"platform.example.com/backup-operator/pkg/storage/s3"
	"platform.example.com/backup-operator/pkg/storage/volume"
)

// gcPercent is the agent's GOGC.
const gcPercent = 50

// Version is recorded in every result and manifest. Release builds set it
// with -ldflags "-X platform.example.com/backup-operator/pkg/agent.Version=v1.2.3".
var Version = "dev"

const usage = `usage: backup-controller agent COMMAND [flags]

Commands:
  backup   --source DIR --output LOCATION [--compression zstd|gzip|none]
           [--recipient AGE1... | --recipients-file FILE]
           [--exec-pod POD --namespace NS [--command JSON] [--hooks JSON]
            [--exec-service-account NAME]]
  restore  --archive LOCATION --target DIR --sha256 HEX [--overwrite refuse|merge|replace]
           [--format tar|file [--file-name NAME]] [--identity-file FILE]
  verify   --archive LOCATION --sha256 HEX [--format tar|file [--file-name NAME]]
           [--identity-file FILE]
  delete   --archive LOCATION [--format tar|file [--file-name NAME]]
  storage check --location DIR|s3://BUCKET[/PREFIX] [--read-only]
  storage list  --location DIR|s3://BUCKET[/PREFIX]

A LOCATION is an archive file (on a mounted volume) or s3://BUCKET/KEY, an
object of the S3 server that the --s3-* flags describe; the credentials are
read from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
"storage check" proves the directory or bucket prefix readable and, unless
--read-only, writable, and leaves nothing behind. "storage list" prints one
JSON line per complete archive below the location (its key and manifest),
then the result, which counts them.

A backup with recipients (--recipient, --recipients-file, or the lines of
` + archive.EnvRecipients + `) is encrypted with age to each of them and must be named
*.tar.zst.age; restore and verify decrypt it with the identities of
--identity-file or ` + archive.EnvIdentity + `. Keys are never printed.

With --exec-pod, the agent runs the --hooks (pre before the read, post after
it, also when it failed) in that pod, as its own ServiceAccount, and with
--command archives the command's standard output instead of --source. It
needs get on pods and create on pods/exec in the namespace. A command of
format tar writes a tar stream, archived like a volume's files; one of format
file (such as pg_dump -Fc) writes one file, archived as it is, compressed and
maybe encrypted with no tar around it, in an archive named
*.FILENAME.zst, *.FILENAME.gz or *.FILENAME (then .age when encrypted), where
FILENAME is the command's fileName (default ` + archive.DefaultFileName + `). Plain tools restore it:
zstd -d < NAME.dump.zst > dump, or age -d -i KEY NAME.dump.zst.age | zstd -d.
Restore and verify read such an archive only when told: --format file
--file-name FILENAME; restore writes the file into the target's root.

Every command prints one JSON result on stdout and accepts
--termination-log PATH (default ` + DefaultTerminationLog + `).
Exit codes: 0 success, 1 failure, 2 invalid arguments, 3 archive failed
verification or is unsafe. Run "backup-controller agent COMMAND -h" for details.
`

// Run executes the agent with args (what follows "agent" on the command line)
// and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		// The compressor's buffers in flight are most of the heap and turn
		// over quickly; collecting at 1.5x instead of 2x the live heap keeps
		// peak RSS near 50 MiB on incompressible data for little CPU. A soft
		// memory limit would sit so close to the live heap that the
		// collector would run without pause.
		debug.SetGCPercent(gcPercent)
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return report(stdout, stderr, DefaultTerminationLog, false, &Status{}, archive.InvalidArgument,
			errors.New("missing command: use backup, restore, verify or delete"))
	}
	switch args[0] {
	case OpBackup:
		return runBackup(ctx, args[1:], stdout, stderr)
	case OpRestore:
		return runRestore(ctx, args[1:], stdout, stderr)
	case OpVerify:
		return runVerify(ctx, args[1:], stdout, stderr)
	case OpDelete:
		return runDelete(ctx, args[1:], stdout, stderr)
	case "storage":
		return runStorage(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	fmt.Fprint(stderr, usage)
	return report(stdout, stderr, DefaultTerminationLog, false, &Status{}, archive.InvalidArgument,
		fmt.Errorf("unknown command %q: use backup, restore, verify or delete", args[0]))
}

// command holds what every subcommand shares.
type command struct {
	fs         *flag.FlagSet
	s3         s3.Config
	keys       keyFlags
	termLog    string
	termLogSet bool
	result     statusHolder
	stdout     io.Writer
	stderr     io.Writer
}

type statusHolder interface{ status() *Status }

func (r *BackupResult) status() *Status  { return &r.Status }
func (r *RestoreResult) status() *Status { return &r.Status }
func (r *VerifyResult) status() *Status  { return &r.Status }
func (r *DeleteResult) status() *Status  { return &r.Status }

func newCommand(op, synopsis string, result statusHolder, stdout, stderr io.Writer) *command {
	*result.status() = Status{Operation: op, ToolVersion: Version, StartTime: time.Now().UTC()}
	c := &command{
		fs:     flag.NewFlagSet("agent "+op, flag.ContinueOnError),
		result: result,
		stdout: stdout,
		stderr: stderr,
	}
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: backup-controller agent %s %s\n\nFlags:\n", op, synopsis)
		c.fs.PrintDefaults()
	}
	c.fs.StringVar(&c.termLog, "termination-log", DefaultTerminationLog,
		"file that receives the JSON result for the kubelet; the default is only written when it exists (inside a container)")
	return c
}

// withStorage registers the flags of the storage backends.
func (c *command) withStorage() *command {
	c.s3.AddFlags(c.fs)
	return c
}

// storage chooses the backend of an archive's location, once: an s3:// URL is an object of
// the S3 server the --s3-* flags describe, anything else a file on a mounted volume. It
// returns the backend and the archive's key in it.
func (c *command) storage(ctx context.Context, location string) (storage.Backend, string, error) {
	if location == "" {
		return nil, "", &archive.Error{Reason: archive.InvalidArgument, Msg: "no archive location: pass a file name or s3://BUCKET/KEY"}
	}
	if strings.HasPrefix(location, s3.Scheme) {
		bucket, key, ok := s3.ParseLocation(location)
		if !ok || key == "" || strings.HasSuffix(key, "/") {
			return nil, "", &archive.Error{Reason: archive.InvalidArgument, Msg: fmt.Sprintf("location %q is not s3://BUCKET/KEY of an archive", location)}
		}
		b, err := c.s3Backend(ctx, bucket, false)
		return b, key, err
	}
	return volume.New(filepath.Dir(location)), filepath.Base(location), nil
}

// s3Backend is bucket of the S3 server the --s3-* flags describe, with the credentials of the
// environment; readOnly adds to --s3-read-only, it never lifts it.
func (c *command) s3Backend(ctx context.Context, bucket string, readOnly bool) (storage.Backend, error) {
	cfg := c.s3
	cfg.Bucket, cfg.ReadOnly = bucket, cfg.ReadOnly || readOnly
	cfg.ReadEnv()
	b, err := s3.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// parse returns the exit code to stop with, or -1 to continue.
func (c *command) parse(args []string) int {
	err := c.fs.Parse(args)
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == "termination-log" {
			c.termLogSet = true
		}
	})
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err == nil && c.fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q: every value is passed with a flag (see -h)", c.fs.Arg(0))
	}
	if err != nil {
		if !c.termLogSet {
			// Parsing stops at the first error; still honour an explicit
			// termination log so the controller sees why.
			if p, ok := findFlag(args, "termination-log"); ok {
				c.termLog, c.termLogSet = p, true
			}
		}
		return c.finish(&archive.Error{Reason: archive.InvalidArgument, Msg: "invalid command line: " + err.Error()})
	}
	return -1
}

// findFlag returns the value of -name or --name in args, in either the
// "--name value" or the "--name=value" form.
func findFlag(args []string, name string) (string, bool) {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// finish fills the status, prints and stores the result, and returns the
// exit code.
func (c *command) finish(err error) int {
	reason := Reason("")
	if err != nil {
		reason = archive.ReasonOf(err)
	}
	return report(c.stdout, c.stderr, c.termLog, c.termLogSet, c.result.status(), reason, err, c.result)
}

func report(stdout, stderr io.Writer, termLog string, explicit bool, st *Status, reason Reason, err error, result ...any) int {
	st.CompletionTime = time.Now().UTC()
	if st.StartTime.IsZero() {
		st.StartTime = st.CompletionTime
		st.ToolVersion = Version
	}
	st.DurationSeconds = st.CompletionTime.Sub(st.StartTime).Seconds()
	code := ExitOK
	if err != nil {
		st.Error = err.Error()
		st.Reason = reason
		code = exitCode(reason)
		fmt.Fprintf(stderr, "error: %s\n", strings.TrimSpace(st.Error))
	}
	var r any = st
	if len(result) > 0 {
		r = result[0]
	}
	b, merr := json.Marshal(r)
	if merr != nil {
		fmt.Fprintf(stderr, "error: cannot encode the result: %v\n", merr)
		return ExitFailed
	}
	fmt.Fprintf(stdout, "%s\n", b)
	msg, merr := terminationMessage(r)
	if merr == nil {
		merr = writeTerminationLog(termLog, explicit, msg)
	}
	if merr != nil {
		fmt.Fprintf(stderr, "warning: cannot write the termination message to %s: %v\n", termLog, merr)
	}
	return code
}

func exitCode(r Reason) int {
	switch r {
	case archive.InvalidArgument:
		return ExitUsage
	case archive.ChecksumMismatch, archive.CorruptArchive, archive.UnsafeArchive:
		return ExitIntegrity
	case archive.EncryptionKeyMissing, archive.WrongEncryptionKey:
		return ExitRefused
	case archive.TargetNotEmpty, archive.TargetNotFound, archive.SourceNotFound, archive.ArchiveNotFound, archive.OutputExists:
		return ExitRefused
	case ExecForbidden, CommandFailed, HookFailed, StreamFailed:
		// Rerunning the hooks or the command would only repeat what the application answered.
		return ExitRefused
	}
	return ExitFailed
}

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	res := &BackupResult{}
	c := newCommand(OpBackup, "--source DIR --output LOCATION [--compression zstd|gzip|none] [--recipient AGE1...]", res, stdout, stderr).withStorage().withRecipients()
	var opts archive.BackupOptions
	var comp, output string
	var err error
	c.fs.StringVar(&opts.Source, "source", "", "directory to back up (the source volume's mount point, mounted read-only)")
	c.fs.StringVar(&output, "output", "", "the archive's file name or s3://BUCKET/KEY; it must end in .tar.zst, .tar.gz or .tar to match the compression")
	c.fs.StringVar(&comp, "compression", "", "zstd, gzip or none (default: implied by --output's extension)")
	c.fs.StringVar(&opts.Origin.Namespace, "namespace", "", "namespace of the claim, recorded in the manifest")
	c.fs.StringVar(&opts.Origin.PVC, "pvc", "", "name of the claim, recorded in the manifest")
	c.fs.StringVar(&opts.Origin.Policy, "policy", "", "BackupPolicy that made the Backup, recorded in the manifest")
	c.fs.StringVar(&opts.Origin.Backup, "backup", "", "name of the Backup, recorded in the manifest")
	c.fs.StringVar(&opts.Origin.BackupUID, "backup-uid", "", "UID of the Backup, recorded in the manifest")
	var lf liveFlags
	lf.add(c)
	c.fs.StringVar(&opts.ExecServiceAccountName, "exec-service-account", "", "ServiceAccount the agent runs --command as, recorded in the manifest")
	if code := c.parse(args); code >= 0 {
		return code
	}
	res.Archive = output
	if comp != "" {
		var cc archive.Compression
		cc, err = archive.ParseCompression(comp)
		if err != nil {
			return c.finish(err)
		}
		opts.Compression = cc
	}
	res.Compression = opts.Compression
	opts.ToolVersion = Version
	if opts.Recipients, err = c.recipients(); err != nil {
		return c.finish(err)
	}
	if !lf.used() {
		return c.finish(backupOnce(ctx, c, res, opts, output))
	}
	// Hooks and a source command: after the checks, pre hooks, the read, then post hooks, which
	// run whenever a pre hook ran, also when the backup failed.
	l := &live{ns: opts.Origin.Namespace, pod: lf.pod, claim: opts.Origin.PVC, flags: &lf, res: res}
	if lf.command.v != nil {
		res.Source = l.sourceStatus()
		cmd := lf.command.v
		opts.Command, opts.Container = cmd.Command, cmd.Container
		switch cmd.Format {
		case platformv1.StreamFormatTar:
		case platformv1.StreamFormatFile:
			opts.Format, opts.FileName = archive.FormatFile, cmd.FileName
		default:
			return c.finish(&archive.Error{Reason: archive.InvalidArgument, Msg: fmt.Sprintf("--command format %q is unknown: use tar (the output is a tar stream) or file (it is one file)", cmd.Format)})
		}
		if opts.Source == "" {
			opts.Source = opts.Origin.Namespace + "/" + lf.pod + "/" + lf.command.v.Container
		}
	}
	if l.client, l.exec, err = newExecutor(); err != nil {
		return c.finish(&archive.Error{Reason: ExecForbidden, Msg: err.Error()})
	}
	if err := l.prepare(ctx); err != nil {
		return c.finish(err)
	}
	err = l.pre(ctx)
	if err == nil {
		var wait func() error
		if lf.command.v != nil {
			var out io.Reader
			out, wait = l.stream(ctx)
			opts.Stream = out
		}
		// Post hooks run before the archive is published, so that one that fails under Fail
		// leaves no archive behind either.
		opts.BeforeCommit = func() error {
			if wait != nil {
				if err := wait(); err != nil {
					return err
				}
			}
			return l.post(ctx)
		}
		err = backupOnce(ctx, c, res, opts, output)
		if wait != nil {
			// The command's failure explains a broken stream better than the stream does.
			if werr := wait(); werr != nil {
				err = werr
			}
		}
	}
	if perr := l.post(ctx); err == nil {
		err = perr
	}
	return c.finish(err)
}

// backupOnce writes the archive of opts to output.
func backupOnce(ctx context.Context, c *command, res *BackupResult, opts archive.BackupOptions, output string) error {
	// The options are checked before the storage is touched: a wrong command line must not
	// start an upload.
	if err := archive.CheckBackupOptions(&opts, output); err != nil {
		return err
	}
	backend, key, err := c.storage(ctx, output)
	if err != nil {
		return err
	}
	source := opts.Source
	if opts.Stream != nil {
		source = ""
	}
	if opts.Sink, err = backend.Create(ctx, key, source); err != nil {
		return err
	}
	stats, err := archive.Backup(ctx, opts)
	if stats != nil {
		res.BackupStats = *stats
	}
	return err
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	res := &RestoreResult{}
	c := newCommand(OpRestore, "--archive LOCATION --target DIR --sha256 HEX [--overwrite refuse|merge|replace] [--format tar|file [--file-name NAME]] [--identity-file FILE]", res, stdout, stderr).withStorage().withIdentity()
	var opts archive.RestoreOptions
	var overwrite string
	var ff formatFlags
	c.fs.StringVar(&opts.Archive, "archive", "", "archive to restore: a file name or s3://BUCKET/KEY")
	c.fs.StringVar(&opts.Target, "target", "", "existing directory to restore into (the target volume's mount point)")
	c.fs.StringVar(&opts.SHA256, "sha256", "", "expected sha256 of the archive, as recorded by the backup; nothing is written unless it matches")
	c.fs.StringVar(&overwrite, "overwrite", string(archive.OverwriteRefuse), "what to do with a non-empty target: refuse, merge (overwrite the archive's files, keep others) or replace (empty the target first)")
	ff.add(c, ", restored into the target's root as --file-name")
	if code := c.parse(args); code >= 0 {
		return code
	}
	var err error
	if opts.Format, opts.FileName, err = ff.parse(); err != nil {
		return c.finish(err)
	}
	ow, err := archive.ParseOverwrite(overwrite)
	if err != nil {
		return c.finish(err)
	}
	opts.Overwrite = ow
	res.Archive, res.Target, res.Overwrite = opts.Archive, opts.Target, ow
	if err := archive.CheckRestoreOptions(&opts); err != nil {
		return c.finish(err)
	}
	if opts.Format == archive.FormatFile {
		res.Format, res.FileName = opts.Format, opts.FileName
	}
	if opts.Identities, err = c.identities(); err != nil {
		return c.finish(err)
	}
	src, err := c.open(ctx, opts.Archive)
	if err != nil {
		return c.finish(err)
	}
	defer src.Close()
	opts.From = src
	stats, err := archive.Restore(ctx, opts)
	if stats != nil {
		res.RestoreStats = *stats
	}
	return c.finish(err)
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	res := &VerifyResult{}
	c := newCommand(OpVerify, "--archive LOCATION --sha256 HEX [--format tar|file [--file-name NAME]] [--identity-file FILE]", res, stdout, stderr).withStorage().withIdentity()
	var location, sum string
	var ff formatFlags
	c.fs.StringVar(&location, "archive", "", "archive to verify: a file name or s3://BUCKET/KEY")
	c.fs.StringVar(&sum, "sha256", "", "expected sha256 of the archive")
	ff.add(c, "")
	if code := c.parse(args); code >= 0 {
		return code
	}
	res.Archive = location
	if err := archive.CheckSHA256(sum); err != nil {
		return c.finish(err)
	}
	format, fileName, err := ff.parse()
	if err != nil {
		return c.finish(err)
	}
	ids, err := c.identities()
	if err != nil {
		return c.finish(err)
	}
	src, err := c.open(ctx, location)
	if err != nil {
		return c.finish(err)
	}
	defer src.Close()
	var stats *archive.VerifyStats
	if format == archive.FormatFile {
		stats, err = archive.VerifyFileArchive(ctx, src, sum, ids, fileName)
	} else {
		stats, err = archive.VerifySource(ctx, src, sum, ids)
	}
	if stats != nil {
		res.VerifyStats = *stats
	}
	return c.finish(err)
}

// formatFlags are --format and --file-name: what an archive holds, which the controller knows
// from the Backup's source.command, since a file archive's name alone cannot say.
type formatFlags struct{ format, fileName string }

// add registers the flags; what says what happens to the file of a file archive.
func (f *formatFlags) add(c *command, what string) {
	c.fs.StringVar(&f.format, "format", string(archive.FormatTar), "what the archive holds, as the backup's source.command.format says: tar, or file (one file"+what+")")
	c.fs.StringVar(&f.fileName, "file-name", "", "with --format file, the backup's source.command.fileName (default "+archive.DefaultFileName+")")
}

// parse returns the format and the file name of a file archive (the default when unset).
func (f *formatFlags) parse() (archive.StreamFormat, string, error) {
	format, err := archive.ParseStreamFormat(f.format)
	switch {
	case err != nil:
		return "", "", err
	case format == archive.FormatTar && f.fileName != "":
		return "", "", &archive.Error{Reason: archive.InvalidArgument, Msg: fmt.Sprintf("--file-name %q applies only to --format file: pass --format file for a file archive, or drop --file-name", f.fileName)}
	case format == archive.FormatFile && f.fileName == "":
		return format, archive.DefaultFileName, nil
	}
	return format, f.fileName, nil
}

// open opens the archive at location for reading.
func (c *command) open(ctx context.Context, location string) (archive.Source, error) {
	backend, key, err := c.storage(ctx, location)
	if err != nil {
		return nil, err
	}
	return backend.Open(ctx, key)
}

func runDelete(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	res := &DeleteResult{}
	c := newCommand(OpDelete, "--archive LOCATION [--format tar|file [--file-name NAME]]", res, stdout, stderr).withStorage()
	var location string
	var ff formatFlags
	c.fs.StringVar(&location, "archive", "", "archive to delete, with its .sha256 and .manifest.json: a file name or s3://BUCKET/KEY")
	ff.add(c, "")
	if code := c.parse(args); code >= 0 {
		return code
	}
	res.Archive = location
	format, fileName, err := ff.parse()
	if err != nil {
		return c.finish(err)
	}
	if format == archive.FormatTar {
		fileName = ""
	}
	backend, key, err := c.storage(ctx, location)
	if err != nil {
		return c.finish(err)
	}
	stats, err := backend.Delete(ctx, key, fileName)
	if stats != nil {
		res.DeleteStats = *stats
	}
	return c.finish(err)
}
