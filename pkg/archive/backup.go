package archive

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxChangedList bounds the list of changed files kept in results and
// manifests; the count is always exact.
const DefaultMaxChangedList = 50

const (
	// copyBufferSize is the unit of large sequential reads and writes, but
	// for file contents read straight into the zstd compressor's pieces.
	copyBufferSize = 1 << 20
	// cancelCheckBytes is how often a long file copy looks at the context.
	cancelCheckBytes = 64 << 20
)

// BackupOptions configures Backup.
type BackupOptions struct {
	// Source is the directory to archive.
	Source string
	// Output is the archive's full file name; its extension must match the
	// compression (.tar.zst, .tar.gz or .tar). It is written as a file unless
	// Sink is set.
	Output string
	// Sink, when set, receives the archive instead of the file Output, and
	// names it: the storage backend's writer.
	Sink Sink
	// Compression defaults to the one implied by Output's extension.
	Compression Compression
	// Recipients, when set, encrypt the archive to them; its name must then end in
	// EncryptedExtension, and must not otherwise.
	Recipients *Recipients
	// ToolVersion is recorded in the manifest.
	ToolVersion string
	// Origin is recorded in the manifest.
	Origin Origin
	// MaxChangedList bounds ChangedFileList; zero means DefaultMaxChangedList.
	MaxChangedList int

	// Stream, when set, is a command's standard output, archived instead of Source: Source is
	// then only recorded. It is a tar stream of a directory, archived entry by entry, unless
	// Format is FormatFile.
	Stream io.Reader
	// Format FormatFile archives Stream as the content of one file, called FileName
	// (DefaultFileName when empty) on restore: compressed, maybe encrypted, and with no tar
	// around it. Output must then end in "." + FileName and the compression's StreamExtension
	// (and EncryptedExtension when encrypted). Empty means FormatTar.
	Format   StreamFormat
	FileName string
	// Command, Container and ExecServiceAccountName are recorded in the manifest as the source
	// of a Stream.
	Command                []string
	Container              string
	ExecServiceAccountName string
	// BeforeCommit, when set, runs once the archive is written and before it is published;
	// an error aborts it, and nothing appears under the final name. A stream's producer reports
	// its exit here: a command that failed after writing a complete tar never makes an archive.
	BeforeCommit func() error

	// wrapOutput lets tests put a failing writer in front of the file.
	wrapOutput func(io.Writer) io.Writer
	// beforeRead lets tests change a file between its stat and its read,
	// as a live database does.
	beforeRead func(rel string)
	// beforeList is the same for directories, before they are listed.
	beforeList func(rel string)
}

// BackupStats is what Backup wrote and what it saw while reading the source.
type BackupStats struct {
	// Archive, ChecksumFile and ManifestFile are the paths written.
	Archive      string `json:"archive"`
	ChecksumFile string `json:"checksumFile"`
	ManifestFile string `json:"manifestFile"`
	// Size is the archive's size in bytes (compressed).
	Size int64 `json:"size"`
	// SourceBytes is the total size of the regular files archived.
	SourceBytes int64 `json:"sourceBytes"`
	// Files counts regular files, Hardlinks the extra names of files already
	// archived, Directories includes the source directory itself.
	Files       int64 `json:"files"`
	Directories int64 `json:"directories"`
	Symlinks    int64 `json:"symlinks"`
	Hardlinks   int64 `json:"hardlinks"`
	// Skipped counts sockets, devices and named pipes, which are not archived.
	Skipped int64 `json:"skipped"`
	// Vanished counts entries deleted or replaced between listing and reading.
	Vanished int64 `json:"vanished"`
	// ChangedFiles counts files modified while they were read; their archived
	// content may be inconsistent. ChangedFileList names the first of them.
	ChangedFiles    int64    `json:"changedFiles"`
	ChangedFileList []string `json:"changedFileList,omitempty"`
	// SHA256 is the hash of the archive file as stored.
	SHA256      string      `json:"sha256"`
	Compression Compression `json:"compression"`
	// Encryption says how the archive is encrypted; nil when it is not.
	Encryption *Encryption `json:"encryption,omitempty"`
}

// Backup archives opts.Source into opts.Output. The archive appears under its
// final name only when it, its checksum file and its manifest are complete
// and on disk; on any failure nothing is left under the final name.
func Backup(ctx context.Context, opts BackupOptions) (*BackupStats, error) {
	start := time.Now()
	name := opts.Output
	if opts.Sink != nil {
		name = opts.Sink.Name()
	}
	comp, err := checkBackupOptions(&opts, name)
	if err != nil {
		return nil, err
	}
	sink := opts.Sink
	if sink == nil {
		source := opts.Source
		if opts.Stream != nil {
			source = "" // not a directory of this machine
		}
		if sink, err = CreateFile(opts.Output, source); err != nil {
			return nil, err
		}
	}
	committed := false // set by commit
	defer func() {
		if !committed {
			sink.Abort()
		}
	}()
	name = sink.Name()
	stats := &BackupStats{
		Archive:      name,
		ChecksumFile: checksumName(name),
		ManifestFile: manifestName(name),
		Compression:  comp,
	}
	if opts.Recipients != nil {
		stats.Encryption = opts.Recipients.Encryption()
	}

	var out io.Writer = sink
	if opts.wrapOutput != nil {
		out = opts.wrapOutput(out)
	}
	// The hash is of the archive as stored, ciphertext when encrypted: integrity is checked
	// before anything is decrypted, and without the key.
	hw := newHashingWriter(out)
	defer hw.close()
	ew, err := encrypter(opts.Recipients, hw)
	if err != nil {
		return nil, err
	}
	cw, err := newCompressor(comp, ew)
	if err != nil {
		return nil, newError(Internal, err, "cannot start the %s compressor", comp)
	}
	if opts.Format == FormatFile {
		werr := copyFileStream(ctx, cw, opts.Stream, stats)
		if werr == nil {
			werr = closeAll(nil, cw)
		} else {
			cw.Close() // stop the compressor's goroutines; the data is discarded
		}
		return commit(ctx, opts, sink, hw, ew, werr, start, &committed, stats)
	}
	w := &walker{
		ctx:        ctx,
		src:        opts.Source,
		tw:         tar.NewWriter(cw),
		zeros:      make([]byte, 64<<10),
		links:      map[fileID]string{},
		stats:      stats,
		maxChanged: opts.MaxChangedList,
		beforeRead: opts.beforeRead,
		beforeList: opts.beforeList,
	}
	if w.maxChanged <= 0 {
		w.maxChanged = DefaultMaxChangedList
	}
	if rb, ok := cw.(readBufferer); ok {
		w.direct = rb
	} else {
		w.buf = make([]byte, copyBufferSize)
	}
	var werr error
	if opts.Stream != nil {
		werr = w.copyStream(opts.Stream)
	} else {
		werr = w.walkRoot()
	}
	if werr == nil {
		werr = closeAll(w.tw, cw)
	} else {
		cw.Close() // stop the compressor's goroutines; the data is discarded
	}
	return commit(ctx, opts, sink, hw, ew, werr, start, &committed, stats)
}

// commit ends a Backup whose plaintext was written, or failed with werr: it finishes the
// encryption and the hash, lets BeforeCommit decide, and publishes the archive with its
// checksum and manifest.
func commit(ctx context.Context, opts BackupOptions, sink Sink, hw *hashingWriter, ew io.WriteCloser, werr error, start time.Time, committed *bool, stats *BackupStats) (*BackupStats, error) {
	name := sink.Name()
	if werr == nil {
		if err := ew.Close(); err != nil {
			werr = writeError(err, "cannot finish the encrypted stream")
		}
	}
	if werr == nil {
		if err := hw.flush(); err != nil {
			werr = writeError(err, "cannot write archive %s", name)
		}
	}
	if werr == nil && opts.BeforeCommit != nil {
		werr = opts.BeforeCommit()
	}
	if werr != nil {
		return nil, werr
	}

	stats.Size = hw.n
	stats.SHA256 = hw.sum()
	m := Manifest{
		ManifestVersion: manifestVersionFor(stats.Encryption),
		Archive:         path.Base(name),
		Source:          opts.Source,
		Command:         opts.Command,
		Origin:          opts.Origin,
		Compression:     stats.Compression,
		Encryption:      stats.Encryption,
		SHA256:          stats.SHA256,
		Size:            stats.Size,
		SourceBytes:     stats.SourceBytes,
		Files:           stats.Files,
		Directories:     stats.Directories,
		Symlinks:        stats.Symlinks,
		Hardlinks:       stats.Hardlinks,
		Skipped:         stats.Skipped,
		Vanished:        stats.Vanished,
		ChangedFiles:    stats.ChangedFiles,
		ChangedFileList: stats.ChangedFileList,
		StartTime:       start.UTC(),
		CompletionTime:  time.Now().UTC(),
		ToolVersion:     opts.ToolVersion,
	}
	if opts.Stream != nil {
		m.Container, m.ExecServiceAccountName = opts.Container, opts.ExecServiceAccountName
	}
	if opts.Format == FormatFile {
		m.Format, m.FileName = FormatFile, opts.FileName
	}
	mb, err := m.encode()
	if err != nil {
		return nil, newError(Internal, err, "cannot encode the manifest")
	}
	if err := sink.Commit(ctx, stats.Size, checksumLine(stats.SHA256, name), mb); err != nil {
		return nil, err
	}
	*committed = true
	return stats, nil
}

// closeAll finishes the tar stream, when there is one, and the compressed stream.
func closeAll(tw *tar.Writer, cw io.Closer) error {
	if tw != nil {
		if err := tw.Close(); err != nil {
			cw.Close()
			return writeError(err, "cannot finish the tar stream")
		}
	}
	if err := cw.Close(); err != nil {
		return writeError(err, "cannot finish the compressed stream")
	}
	return nil
}

// CheckBackupOptions validates opts for an archive called name before anything is written: the
// agent calls it before it opens the storage. It fills in the compression the name implies and
// makes the source absolute.
func CheckBackupOptions(opts *BackupOptions, name string) error {
	comp, err := checkBackupOptions(opts, name)
	if err == nil {
		opts.Compression = comp
	}
	return err
}

func checkBackupOptions(opts *BackupOptions, name string) (Compression, error) {
	if opts.Source == "" && opts.Stream == nil {
		return "", newError(InvalidArgument, nil, "--source is required: pass the directory to back up")
	}
	if name == "" {
		return "", newError(InvalidArgument, nil, "--output is required: pass the archive's full file name, ending in .tar.zst, .tar.gz or .tar")
	}
	fileName := ""
	switch opts.Format {
	case "", FormatTar:
		opts.Format, opts.FileName = "", ""
	case FormatFile:
		if opts.Stream == nil {
			return "", newError(InvalidArgument, nil, "format file archives a command's output, and no command was given: back a volume up as a tar (the default format)")
		}
		if opts.FileName == "" {
			opts.FileName = DefaultFileName
		}
		if err := CheckFileName(opts.FileName); err != nil {
			return "", err
		}
		fileName = opts.FileName
	default:
		_, err := ParseStreamFormat(string(opts.Format))
		return "", err
	}
	comp := opts.Compression
	format, ok := formatForName(name, fileName)
	byName := format.Compression
	encrypted := opts.Recipients != nil
	want := Format{Compression: comp, Encrypted: encrypted, FileName: fileName}
	switch {
	case !ok && comp == "" && fileName != "":
		return "", newError(InvalidArgument, nil, "--output %q must end in .%s.zst (zstd, the default), .%s.gz (gzip) or .%s (none)%s: a file archive is named after the file it restores as", name, fileName, fileName, fileName, encryptedHint(encrypted))
	case !ok && comp == "":
		return "", newError(InvalidArgument, nil, "--output %q must end in .tar.zst (zstd, the default), .tar.gz (gzip) or .tar (none)%s", name, encryptedHint(encrypted))
	case !ok:
		return "", newError(InvalidArgument, nil, "--output %q must end in %s for --compression %s", name, want.Extension(), comp)
	case comp == "":
		comp = byName
	case comp != byName:
		return "", newError(InvalidArgument, nil, "--output %q ends in %s but --compression is %s: name it %s", name, format.Extension(), comp, format.Trim(name)+want.Extension())
	}
	switch {
	case encrypted && !format.Encrypted:
		return "", newError(InvalidArgument, nil, "--output %q is encrypted, so its name must end in %s: name it %s", name, EncryptedExtension, name+EncryptedExtension)
	case !encrypted && format.Encrypted:
		return "", newError(InvalidArgument, nil, "--output %q ends in %s but no recipient was given: pass --recipient, --recipients-file or %s, or drop %s from the name", name, EncryptedExtension, EnvRecipients, EncryptedExtension)
	}

	if opts.Stream != nil {
		return comp, nil
	}
	src, err := filepath.Abs(opts.Source)
	if err != nil {
		return "", newError(InvalidArgument, err, "invalid --source %q", opts.Source)
	}
	fi, err := os.Stat(src)
	if err != nil || !fi.IsDir() {
		return "", newError(SourceNotFound, err, "source %s is not a readable directory: check the volume is mounted at that path", src)
	}
	opts.Source = src
	return comp, nil
}

func outputExists(path string) *Error {
	return newError(OutputExists, nil, "archive %s already exists and is never replaced: delete it first (agent delete --archive %s) or choose another --output", path, path)
}

// writeError classifies a failure to write the archive, with the usual fix.
func writeError(err error, format string, args ...any) *Error {
	e := newError(WriteFailed, err, format, args...)
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		e.Msg += " (the storage is full: free space or use a larger volume)"
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		e.Msg += " (the storage is not writable by the agent: check the mount and its permissions)"
	}
	return e
}

func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// inside reports whether p is dir or below it.
func inside(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

type fileID struct{ dev, ino uint64 }

// readBufferer is a compressor that file contents can be read into
// directly, saving a copy: the slice readBuffer returns is valid until the
// next Write, and a Write of its prefix takes the bytes in place.
type readBufferer interface {
	readBuffer() ([]byte, error)
}

// walker writes the source tree depth first, in name order, so two backups of
// the same tree produce the same entry order.
type walker struct {
	ctx        context.Context
	src        string
	tw         *tar.Writer
	hdr        tar.Header
	direct     readBufferer // when set, file contents are read into it
	buf        []byte       // otherwise, into buf
	zeros      []byte
	probe      [1]byte
	links      map[fileID]string
	stats      *BackupStats
	maxChanged int
	sinceCheck int64
	beforeRead func(rel string)
	beforeList func(rel string)
}

// copyFileStream compresses r, the content of a file archive, into cw: the whole of it, with no
// tar around it, counting it as one file.
func copyFileStream(ctx context.Context, cw io.Writer, r io.Reader, stats *BackupStats) error {
	direct, _ := cw.(readBufferer)
	var buf []byte
	if direct == nil {
		buf = make([]byte, copyBufferSize)
	}
	var sinceCheck int64
	for {
		if direct != nil {
			b, err := direct.readBuffer()
			if err != nil {
				return writeError(err, "cannot write archive data")
			}
			buf = b
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := cw.Write(buf[:n]); err != nil {
				return writeError(err, "cannot write archive data")
			}
			stats.SourceBytes += int64(n)
			if sinceCheck += int64(n); sinceCheck >= cancelCheckBytes {
				sinceCheck = 0
				if err := ctx.Err(); err != nil {
					return newError(Canceled, err, "backup interrupted; nothing was left under the final name, run it again")
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return newError(StreamFailed, rerr, "reading the command's output")
		}
	}
	if stats.SourceBytes == 0 {
		return newError(StreamFailed, nil, "the command wrote nothing to its standard output: there is nothing to back up (check that it writes the dump to standard output, not to a file)")
	}
	stats.Files = 1
	return nil
}

func (w *walker) walkRoot() error {
	fi, err := os.Stat(w.src)
	if err != nil {
		return newError(SourceNotFound, err, "source %s disappeared", w.src)
	}
	// The root entry carries the source directory's own mode, owner and
	// mtime, which restore applies to the target directory.
	if err := w.writeHeader("./", tar.TypeDir, fi, "", 0); err != nil {
		return err
	}
	w.stats.Directories++
	return w.walkDir("")
}

func (w *walker) walkDir(rel string) error {
	dirPath := w.abs(rel)
	if w.beforeList != nil {
		w.beforeList(rel)
	}
	d, err := os.Open(dirPath)
	if err != nil {
		if rel != "" && errors.Is(err, fs.ErrNotExist) {
			w.stats.Vanished++
			return nil
		}
		return readError(err, dirPath)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return readError(err, dirPath)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			return newError(Canceled, err, "backup interrupted; nothing was left under the final name, run it again")
		}
		child := name
		if rel != "" {
			child = rel + "/" + name
		}
		if err := w.entry(child); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) abs(rel string) string {
	if rel == "" {
		return w.src
	}
	return w.src + "/" + rel
}

func (w *walker) entry(rel string) error {
	p := w.abs(rel)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			w.stats.Vanished++
			return nil
		}
		return readError(err, p)
	}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		if err := w.writeHeader(rel+"/", tar.TypeDir, fi, "", 0); err != nil {
			return err
		}
		w.stats.Directories++
		return w.walkDir(rel)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
				w.stats.Vanished++
				return nil
			}
			return readError(err, p)
		}
		if err := w.writeHeader(rel, tar.TypeSymlink, fi, target, 0); err != nil {
			return err
		}
		w.stats.Symlinks++
		return nil
	case mode.IsRegular():
		return w.file(rel, p, fi)
	default:
		// Sockets, devices and named pipes have no content to back up and
		// recreating devices on restore would be a privilege escalation.
		w.stats.Skipped++
		return nil
	}
}

func (w *walker) file(rel, p string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if first, ok := w.links[id]; ok {
			if err := w.writeHeader(rel, tar.TypeLink, fi, first, 0); err != nil {
				return err
			}
			w.stats.Hardlinks++
			return nil
		}
		w.links[id] = rel
	}
	// O_NONBLOCK: if the file was swapped for a named pipe since Lstat,
	// opening must not hang. O_NOFOLLOW: never read through a new symlink.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			w.stats.Vanished++
			return nil
		}
		return readError(err, p)
	}
	defer f.Close()
	readSequentially(f)
	ofi, err := f.Stat()
	if err != nil {
		return readError(err, p)
	}
	ost := ofi.Sys().(*syscall.Stat_t)
	if !ofi.Mode().IsRegular() || ost.Ino != st.Ino || ost.Dev != st.Dev {
		w.stats.Vanished++
		return nil
	}
	size := ofi.Size()
	if w.beforeRead != nil {
		w.beforeRead(rel)
	}
	if err := w.writeHeader(rel, tar.TypeReg, ofi, "", size); err != nil {
		return err
	}
	w.stats.Files++
	w.stats.SourceBytes += size

	changed := false
	remaining := size
	for remaining > 0 {
		buf := w.buf
		if w.direct != nil {
			b, err := w.direct.readBuffer()
			if err != nil {
				return writeError(err, "cannot write archive data")
			}
			buf = b
		}
		n, rerr := f.Read(buf[:min(int64(len(buf)), remaining)])
		if n > 0 {
			if _, err := w.tw.Write(buf[:n]); err != nil {
				return writeError(err, "cannot write archive data")
			}
			remaining -= int64(n)
			if err := w.checkCancel(int64(n)); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return readError(rerr, p)
		}
	}
	if remaining > 0 {
		// The file shrank: the header promised size bytes, so pad with zeros
		// and report the file as changed.
		changed = true
		for remaining > 0 {
			n := min(int64(len(w.zeros)), remaining)
			if _, err := w.tw.Write(w.zeros[:n]); err != nil {
				return writeError(err, "cannot write archive data")
			}
			remaining -= n
		}
	} else if n, _ := f.Read(w.probe[:]); n > 0 {
		changed = true // it grew; the archive holds the first size bytes
	}
	if !changed {
		after, err := f.Stat()
		if err != nil {
			return readError(err, p)
		}
		changed = after.Size() != size || !after.ModTime().Equal(ofi.ModTime())
	}
	if changed {
		w.stats.ChangedFiles++
		if len(w.stats.ChangedFileList) < w.maxChanged {
			w.stats.ChangedFileList = append(w.stats.ChangedFileList, rel)
		}
	}
	return nil
}

func (w *walker) checkCancel(n int64) error {
	w.sinceCheck += n
	if w.sinceCheck < cancelCheckBytes {
		return nil
	}
	w.sinceCheck = 0
	if err := w.ctx.Err(); err != nil {
		return newError(Canceled, err, "backup interrupted; nothing was left under the final name, run it again")
	}
	return nil
}

// writeHeader reuses one Header for every entry: archive/tar copies what it
// needs, and the backup stays free of per-file header allocations.
func (w *walker) writeHeader(name string, typ byte, fi fs.FileInfo, link string, size int64) error {
	st := fi.Sys().(*syscall.Stat_t)
	h := &w.hdr
	*h = tar.Header{
		Typeflag: typ,
		Name:     name,
		Linkname: link,
		Size:     size,
		Mode:     tarMode(fi.Mode()),
		Uid:      int(st.Uid),
		Gid:      int(st.Gid),
		ModTime:  time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
		Format:   tar.FormatPAX,
	}
	if err := w.tw.WriteHeader(h); err != nil {
		return writeError(err, "cannot write archive header for %s", name)
	}
	return nil
}

// tarMode converts Go's mode bits to the tar (and chmod) encoding.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

func readError(err error, p string) *Error {
	e := newError(ReadFailed, err, "cannot read %s", p)
	if errors.Is(err, fs.ErrPermission) {
		e.Msg += " (permission denied: run the agent as a user that can read every file of the volume, usually root or the volume owner's uid)"
	} else {
		e.Msg += " (the volume may be failing: check the node's kernel log, then retry)"
	}
	return e
}

func encryptedHint(encrypted bool) string {
	if encrypted {
		return ", followed by " + EncryptedExtension + " when encrypted"
	}
	return ""
}
