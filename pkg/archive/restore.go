package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// Overwrite says what restore may do to a target that already holds data.
type Overwrite string

// Overwrite modes.
const (
	// OverwriteRefuse fails with TargetNotEmpty unless the target is empty.
	OverwriteRefuse Overwrite = "refuse"
	// OverwriteMerge writes the archive's entries over the target's and keeps
	// everything the archive does not contain.
	OverwriteMerge Overwrite = "merge"
	// OverwriteReplace empties the target first; the target directory itself
	// stays because it is usually a volume's mount point.
	OverwriteReplace Overwrite = "replace"
)

// lostFound is created by mkfs on ext file systems and owned by fsck. A fresh
// volume contains it, so it never makes a target "not empty" and replace
// leaves it alone.
const lostFound = "lost+found"

// ParseOverwrite validates an --overwrite value.
func ParseOverwrite(s string) (Overwrite, error) {
	switch o := Overwrite(strings.ToLower(s)); o {
	case OverwriteRefuse, OverwriteMerge, OverwriteReplace:
		return o, nil
	}
	return "", newError(InvalidArgument, nil, "unknown --overwrite %q: use refuse (default), merge or replace", s)
}

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// Archive is the file to restore, unless From is set.
	Archive string
	// From, when set, is the archive to restore: the storage backend's reader.
	From Source
	// Target is the existing directory to restore into.
	Target string
	// SHA256 is the archive's expected hash; nothing is written unless the
	// archive matches it.
	SHA256 string
	// Overwrite defaults to OverwriteRefuse.
	Overwrite Overwrite
	// Identities decrypt an encrypted archive.
	Identities *Identities
	// Format FormatFile restores a file archive: its content is written into the target's
	// root as FileName (DefaultFileName when empty), whose name the archive's must carry (see
	// FileFormatForName). Empty means FormatTar. It is never guessed from the archive.
	Format   StreamFormat
	FileName string
}

// CheckRestoreOptions validates opts before anything is read or written, normalizing the
// checksum and the overwrite mode.
func CheckRestoreOptions(opts *RestoreOptions) error {
	if opts.Archive == "" && opts.From == nil {
		return newError(InvalidArgument, nil, "--archive is required: pass the archive file to restore")
	}
	if opts.Target == "" {
		return newError(InvalidArgument, nil, "--target is required: pass the directory to restore into")
	}
	want, err := normalizeSHA256(opts.SHA256)
	if err != nil {
		return err
	}
	mode := opts.Overwrite
	if mode == "" {
		mode = OverwriteRefuse
	}
	if mode, err = ParseOverwrite(string(mode)); err != nil {
		return err
	}
	format, err := ParseStreamFormat(string(opts.Format))
	if err != nil {
		return err
	}
	switch {
	case format == FormatTar && opts.FileName != "":
		return newError(InvalidArgument, nil, "--file-name %q applies only to --format file: pass --format file for a file archive, or drop --file-name", opts.FileName)
	case format == FormatFile && opts.FileName == "":
		opts.FileName = DefaultFileName
	}
	if format == FormatFile {
		if err := CheckFileName(opts.FileName); err != nil {
			return err
		}
	}
	opts.SHA256, opts.Overwrite, opts.Format = want, mode, format
	return nil
}

// RestoreStats is what Restore wrote.
type RestoreStats struct {
	Archive     string      `json:"archive"`
	Target      string      `json:"target"`
	SHA256      string      `json:"sha256"`
	Compression Compression `json:"compression"`
	// Encryption is "age" for an archive that was decrypted, empty for a plain one.
	Encryption string    `json:"encryption,omitempty"`
	Overwrite  Overwrite `json:"overwrite"`
	// Size is the archive's size in bytes.
	Size int64 `json:"size"`
	// Bytes is the total size of the regular files restored.
	Bytes       int64 `json:"bytes"`
	Files       int64 `json:"files"`
	Directories int64 `json:"directories"`
	Symlinks    int64 `json:"symlinks"`
	Hardlinks   int64 `json:"hardlinks"`
	// Skipped counts device, pipe and unknown entries, which are never created.
	Skipped int64 `json:"skipped"`
	// OwnershipSkipped counts entries whose owner could not be set because
	// the agent lacks the privilege (it needs root or CAP_CHOWN).
	OwnershipSkipped int64 `json:"ownershipSkipped"`
	// Removed counts the top-level entries deleted by OverwriteReplace.
	Removed int64 `json:"removed"`
	// Format is FormatFile for a file archive, restored as FileName; omitted for a tar.
	Format   StreamFormat `json:"format,omitempty"`
	FileName string       `json:"fileName,omitempty"`
}

// Restore verifies the archive against opts.SHA256, then extracts it into
// opts.Target. Nothing is written before the whole archive has been hashed,
// and nothing is ever created, changed or removed outside the target: every
// file operation goes through an os.Root opened on the target, and entries
// that try to leave it are refused with UnsafeArchive.
func Restore(ctx context.Context, opts RestoreOptions) (*RestoreStats, error) {
	if err := CheckRestoreOptions(&opts); err != nil {
		return nil, err
	}
	want, mode := opts.SHA256, opts.Overwrite
	var err error
	src := opts.From
	if src == nil {
		if src, err = OpenFile(opts.Archive); err != nil {
			return nil, err
		}
		defer src.Close()
	}
	name := src.Name()
	format, err := archiveFormat(name, opts.Format, opts.FileName)
	if err != nil {
		return nil, err
	}
	if format.Encrypted && opts.Identities == nil {
		// Before the archive is read: without a key there is nothing to find out.
		return nil, keyMissing(name)
	}
	hashed := hashInBackground(ctx, src)

	root, err := os.OpenRoot(opts.Target)
	if err != nil {
		return nil, newError(TargetNotFound, err, "restore target %s is not an existing directory: mount the target volume there first", opts.Target)
	}
	defer root.Close()
	stats := &RestoreStats{
		Archive:   name,
		Target:    opts.Target,
		SHA256:    want,
		Overwrite: mode,
		Size:      src.Size(),
	}
	if opts.Format == FormatFile {
		stats.Format, stats.FileName = FormatFile, opts.FileName
		return restoreFile(ctx, opts, src, root, format, stats, hashed)
	}
	present, err := targetEntries(root, opts.Target, "")
	if err != nil {
		return nil, err
	}
	v := &verification{hashed: hashed, want: want, archive: name,
		prepare: func() error { return prepareTarget(root, opts.Target, mode, stats, "") }}
	if len(present) == 0 {
		// Only into an empty target: staged files take room until they are linked, and a
		// replace must not leave the old contents and the new side by side.
		v.startStaging(root)
	}
	x := newExtractor(root, make([]byte, copyBufferSize), stats)
	x.verify = v

	// The extraction reads the archive through a reader of its own, which sees the bytes the
	// hash sees (Source.Open); Unchanged checks that after the extraction.
	r, err := src.Open(ctx)
	if err != nil {
		return nil, x.abandon(err)
	}
	defer r.Close()
	br, err := plaintext(name, r, opts.Identities)
	if err != nil {
		return nil, x.abandon(err)
	}
	defer br.Close()
	if br.encrypted {
		stats.Encryption = EncryptionAge
	}
	head, _ := br.Peek(len(zstdMagic))
	stats.Compression = sniff(head)
	dec, err := newDecompressor(stats.Compression, br)
	if err != nil {
		return nil, x.abandon(corrupt(name, stats.Compression, err))
	}
	xerr := x.run(ctx, tar.NewReader(dec))
	dec.Close()
	if xerr == nil {
		xerr = x.finish()
	}
	if xerr != nil {
		var e *Error
		if errors.As(xerr, &e) && e.Reason == CorruptArchive {
			e.Msg = corrupt(name, stats.Compression, nil).Msg + ": " + e.Msg
		}
		return nil, xerr
	}
	if err := src.Unchanged(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Msg += "; the target holds an unverified restore: restore again with --overwrite replace"
		}
		return nil, err
	}
	if err := syncRoot(root); err != nil {
		return nil, newError(WriteFailed, err, "cannot flush the restored files in %s to disk", opts.Target)
	}
	return stats, nil
}

// decryptAhead is how many buffers of copyBufferSize the decryption of an archive runs ahead
// of its decompression.
const decryptAhead = 4

// plainStream is the compressed tar stream of an archive: the archive itself, or what its
// identities decrypt. Close stops the decryption's goroutine.
type plainStream struct {
	*bufio.Reader
	encrypted bool
	ahead     *readAhead
}

func (p *plainStream) Close() {
	if p.ahead != nil {
		p.ahead.Close()
	}
}

// plaintext returns the compressed tar stream of the archive r, called name: r itself, or
// what ids decrypt when r is encrypted (whatever its name says).
func plaintext(name string, r io.Reader, ids *Identities) (*plainStream, error) {
	br := bufio.NewReaderSize(r, copyBufferSize)
	head, _ := br.Peek(len(ageMagic))
	if !isEncrypted(head) {
		return &plainStream{Reader: br}, nil
	}
	dr, err := decrypter(name, br, ids)
	if err != nil {
		return nil, err
	}
	ahead := newReadAhead(dr, decryptAhead, copyBufferSize)
	return &plainStream{Reader: bufio.NewReaderSize(ahead, copyBufferSize), encrypted: true, ahead: ahead}, nil
}

func corrupt(archive string, c Compression, err error) *Error {
	return newError(CorruptArchive, err, "archive %s matches its checksum but is not a valid %s-compressed tar stream, so it was damaged before it was checksummed; restore another backup", archive, c)
}

// archiveFormat is the format of the archive called name, restored or verified as format (a
// file archive as fileName). Only a tar's name may lack an extension, for tar archives are
// recognised by their content; a file archive's name must be that of fileName's archive.
func archiveFormat(name string, format StreamFormat, fileName string) (Format, error) {
	if format != FormatFile {
		f, _ := FormatForName(name)
		return f, nil
	}
	f, ok := FileFormatForName(path.Base(name), fileName)
	if !ok {
		return Format{}, newError(InvalidArgument, nil, "archive %s is not the file archive of %q: its name would end in .%s.zst, .%s.gz or .%s (then .age when encrypted). Pass the --file-name the backup was made with (its source.command.fileName), or --format tar for a tar archive", name, fileName, fileName, fileName, fileName)
	}
	return f, nil
}

// targetEntries lists what the target holds, but for an ext file system's
// lost+found and keep (a restore's own temporary file; empty for none).
func targetEntries(root *os.Root, target, keep string) ([]string, error) {
	d, err := root.Open(".")
	if err != nil {
		return nil, newError(TargetNotFound, err, "cannot open restore target %s", target)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, newError(TargetNotFound, err, "cannot list restore target %s", target)
	}
	var present []string
	for _, n := range names {
		if n == keep && keep != "" {
			continue
		}
		if n == lostFound {
			if fi, err := root.Lstat(n); err == nil && fi.IsDir() {
				continue
			}
		}
		present = append(present, n)
	}
	return present, nil
}

// prepareTarget enforces the overwrite mode before anything is extracted, leaving keep alone.
func prepareTarget(root *os.Root, target string, mode Overwrite, stats *RestoreStats, keep string) error {
	present, err := targetEntries(root, target, keep)
	if err != nil {
		return err
	}
	if len(present) == 0 {
		return nil
	}
	switch mode {
	case OverwriteMerge:
		return nil
	case OverwriteReplace:
		for _, n := range present {
			if err := root.RemoveAll(n); err != nil {
				return newError(WriteFailed, err, "cannot empty restore target %s (removing %s)", target, n)
			}
			stats.Removed++
		}
		return nil
	}
	return newError(TargetNotEmpty, nil, "restore target %s is not empty (%d entries, for example %q): restore into an empty volume, or pass --overwrite merge to write the archive over it keeping other files, or --overwrite replace to delete its contents first", target, len(present), present[0])
}

// dirMeta is applied once everything is extracted: a read-only directory
// mode would block its own contents, and writing contents changes its mtime.
type dirMeta struct {
	name     string
	mode     fs.FileMode
	uid, gid int
	mtime    time.Time
}

type extractor struct {
	root *os.Root
	// verify is the archive's pending verification: until it ends, entries
	// are only staged (stage.go).
	verify *verification
	buf    []byte
	stats  *RestoreStats
	// symlinks holds the symlinks this archive created; an entry below one of
	// them is the classic way of writing outside the target and is refused.
	symlinks map[string]struct{}
	dirs     []dirMeta
	// zeros is allocated on the first sparse entry.
	zeros []byte
}

func newExtractor(root *os.Root, buf []byte, stats *RestoreStats) *extractor {
	return &extractor{root: root, buf: buf, stats: stats, symlinks: map[string]struct{}{}}
}

func (x *extractor) run(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			if x.verify != nil {
				x.verify.release()
				return newError(Canceled, err, "restore interrupted before the archive was verified; nothing was written to the target")
			}
			return newError(Canceled, err, "restore interrupted; the target is partially restored: run the restore again with --overwrite replace")
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return x.verified()
		}
		if err != nil {
			err = newError(CorruptArchive, err, "reading the next tar header")
			if x.verify != nil {
				return x.abandon(err)
			}
			return err
		}
		if x.verify != nil {
			staged, err := x.verify.stage(x, hdr, tr)
			if err != nil {
				return x.abandon(err)
			}
			if staged {
				continue
			}
			if err := x.verified(); err != nil {
				return err
			}
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
}

func unsafeEntry(name, why string) *Error {
	return newError(UnsafeArchive, nil, "archive entry %q %s, which could write outside the restore target; the archive was not produced by this tool or was tampered with, and nothing outside the target was touched", name, why)
}

// safeName cleans an entry name and refuses names that leave the target
// lexically. Symlinks are handled separately (underSymlink and os.Root).
func safeName(name string) (string, *Error) {
	clean, why := checkName(name)
	if why != "" {
		return "", unsafeEntry(name, why)
	}
	return clean, nil
}

// checkName returns the cleaned name, or why it is unsafe.
func checkName(name string) (clean, why string) {
	switch {
	case name == "":
		return "", "has an empty name"
	case strings.IndexByte(name, 0) >= 0:
		return "", "contains a NUL byte"
	case strings.HasPrefix(name, "/"):
		return "", "is an absolute path"
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", "contains a \"..\" component"
		}
	}
	return path.Clean(name), ""
}

// underSymlink returns the symlink created by this archive that name would
// be resolved through, if any.
func (x *extractor) underSymlink(name string) (string, bool) {
	if len(x.symlinks) == 0 {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			if _, ok := x.symlinks[name[:i]]; ok {
				return name[:i], true
			}
		}
	}
	return "", false
}

// entry restores one entry read from the archive.
func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	return x.place(hdr, func(name string) error { return x.file(name, hdr, r) })
}

// place checks an entry and creates it; regular creates a regular file
// under its checked name.
func (x *extractor) place(hdr *tar.Header, regular func(name string) error) error {
	name, uerr := safeName(hdr.Name)
	if uerr != nil {
		return uerr
	}
	if link, ok := x.underSymlink(name); ok {
		return unsafeEntry(hdr.Name, "is below the symlink "+link+" created earlier in the archive")
	}
	if name == "." && hdr.Typeflag != tar.TypeDir {
		return unsafeEntry(hdr.Name, "would replace the target directory itself")
	}
	var err error
	switch {
	case hdr.Typeflag == tar.TypeDir:
		err = x.dir(name, hdr)
	case isRegular(hdr):
		err = regular(name)
	case hdr.Typeflag == tar.TypeSymlink:
		err = x.symlink(name, hdr)
	case hdr.Typeflag == tar.TypeLink:
		err = x.hardlink(name, hdr)
	default:
		// Devices, pipes and unknown types: creating devices from an archive
		// would hand out access to the node's hardware.
		x.stats.Skipped++
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return err
		}
		if isEscape(err) {
			return unsafeEntry(hdr.Name, "resolves through a symlink that points outside the target")
		}
		return newError(WriteFailed, err, "cannot restore %q", hdr.Name)
	}
	return nil
}

// isEscape recognises os.Root's refusal to leave the root. The refusal is
// what keeps the target safe; this only picks the reason to report.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// makeRoom clears name for a new entry: a non-directory is removed, an empty
// directory too; a non-empty directory is an error.
func (x *extractor) makeRoom(name string) error {
	fi, err := x.root.Lstat(name)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if err := x.root.Remove(name); err != nil {
			return newError(WriteFailed, err, "cannot replace directory %q with a non-directory from the archive; empty it or restore with --overwrite replace", name)
		}
	} else if err := x.root.Remove(name); err != nil {
		return err
	}
	delete(x.symlinks, name)
	return nil
}

// retry runs op, making room for it or creating missing parents once.
func (x *extractor) retry(name string, op func() error) error {
	err := op()
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		if err := x.makeRoom(name); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist):
		// Archives made by other tools may omit parent directories.
		if dir := path.Dir(name); dir != "." {
			if err := x.root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
	default:
		return err
	}
	return op()
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	if name != "." {
		err := x.root.Mkdir(name, 0o700)
		if errors.Is(err, fs.ErrExist) {
			fi, lerr := x.root.Lstat(name)
			if lerr != nil {
				return lerr
			}
			if !fi.IsDir() {
				err = x.retry(name, func() error { return x.root.Mkdir(name, 0o700) })
			} else {
				err = nil
			}
		} else if errors.Is(err, fs.ErrNotExist) {
			err = x.retry(name, func() error { return x.root.Mkdir(name, 0o700) })
		}
		if err != nil {
			return err
		}
		delete(x.symlinks, name)
	}
	x.stats.Directories++
	x.dirs = append(x.dirs, dirMeta{name: name, mode: hdr.FileInfo().Mode(), uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime})
	return nil
}

// isRegular: the entry is a regular file, its content in the archive.
func isRegular(hdr *tar.Header) bool {
	switch hdr.Typeflag {
	case tar.TypeReg, '\x00', tar.TypeGNUSparse, tar.TypeCont:
		return true
	}
	return false
}

func (x *extractor) file(name string, hdr *tar.Header, r io.Reader) error {
	var f *os.File
	err := x.retry(name, func() error {
		var err error
		f, err = x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	delete(x.symlinks, name)
	n, err := x.content(f, r, isSparse(hdr))
	x.stats.Bytes += n
	if err != nil {
		f.Close()
		return err
	}
	return x.closeFile(f, hdr)
}

// content writes an entry's content into f.
func (x *extractor) content(f *os.File, r io.Reader, sparse bool) (int64, error) {
	var zeros []byte
	if sparse {
		// Skip the holes of sparse entries instead of writing them, so the
		// file stays sparse and a small hostile archive cannot fill the
		// target with zeros.
		if x.zeros == nil {
			x.zeros = make([]byte, len(x.buf))
		}
		zeros = x.zeros
	}
	return copyData(f, r, x.buf, zeros)
}

// closeFile gives a written file its owner, mode and times, and closes it.
func (x *extractor) closeFile(f *os.File, hdr *tar.Header) error {
	if err := x.chown(func() error { return f.Chown(hdr.Uid, hdr.Gid) }); err != nil {
		f.Close()
		return err
	}
	// chmod after chown: chown clears the setuid and setgid bits.
	if err := f.Chmod(hdr.FileInfo().Mode()); err != nil {
		f.Close()
		return err
	}
	if err := futimens(f, hdr.ModTime); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	x.stats.Files++
	return nil
}

// isSparse reports whether archive/tar expands the entry from a sparse map
// (old GNU sparse headers or the GNU sparse PAX records).
func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// copyData copies an entry's content; read errors mean a corrupt stream,
// write errors a failing target. With zeros (as long as buf), all-zero
// chunks become holes.
//
// Write-back of the data is started every writebackChunk bytes and at the
// end, so the final syncfs finds most of the restore already on disk, and
// the chunks already on disk leave the page cache (see writeback).
func copyData(f *os.File, r io.Reader, buf, zeros []byte) (int64, error) {
	var total int64
	wb := writeback{f: f, drop: true}
	hole := false
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if zeros != nil && bytes.Equal(buf[:n], zeros[:n]) {
				if _, err := f.Seek(int64(n), io.SeekCurrent); err != nil {
					return total, err
				}
				hole = true
			} else {
				if _, err := f.Write(buf[:n]); err != nil {
					return total, err
				}
				hole = false
			}
			total += int64(n)
			if err := wb.wrote(total); err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			if hole {
				// A trailing hole only moved the offset: set the size.
				if err := f.Truncate(total); err != nil {
					return total, err
				}
			}
			wb.finish(total)
			return total, nil
		}
		if rerr != nil {
			return total, newError(CorruptArchive, rerr, "reading the content of %q", f.Name())
		}
	}
}

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	if hdr.Linkname == "" {
		return newError(CorruptArchive, nil, "symlink %q has an empty target", hdr.Name)
	}
	// The link's own target may point anywhere (for example an absolute
	// path valid on the original host): creating it writes nothing outside,
	// and entries below it are refused by underSymlink.
	if err := x.retry(name, func() error { return x.root.Symlink(hdr.Linkname, name) }); err != nil {
		return err
	}
	x.symlinks[name] = struct{}{}
	if err := x.chown(func() error { return x.root.Lchown(name, hdr.Uid, hdr.Gid) }); err != nil {
		return err
	}
	if err := lutimes(x.root, name, hdr.ModTime); err != nil {
		return err
	}
	x.stats.Symlinks++
	return nil
}

func (x *extractor) hardlink(name string, hdr *tar.Header) error {
	old, why := checkName(hdr.Linkname)
	if why != "" {
		return unsafeEntry(hdr.Name, fmt.Sprintf("is a hard link to %q, which %s", hdr.Linkname, why))
	}
	if old == "." {
		return unsafeEntry(hdr.Name, "is a hard link to the target directory")
	}
	if link, ok := x.underSymlink(old); ok {
		return unsafeEntry(hdr.Name, "is a hard link through the symlink "+link)
	}
	if old == name {
		return newError(CorruptArchive, nil, "hard link %q points to itself", hdr.Name)
	}
	err := x.retry(name, func() error { return x.root.Link(old, name) })
	if errors.Is(err, fs.ErrNotExist) {
		return newError(CorruptArchive, err, "hard link %q points to %q, which the archive did not contain before it", hdr.Name, hdr.Linkname)
	}
	if err != nil {
		return err
	}
	delete(x.symlinks, name)
	if _, ok := x.symlinks[old]; ok {
		// A hard link to a symlink is a symlink too.
		x.symlinks[name] = struct{}{}
	}
	x.stats.Hardlinks++
	return nil
}

// chown runs op, which changes an entry's owner or, on an entry the agent does not own, its mode
// or times, and counts a missing privilege instead of failing: a restore by an unprivileged agent
// still restores the data.
func (x *extractor) chown(op func() error) error {
	err := op()
	if err != nil && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EINVAL)) {
		x.stats.OwnershipSkipped++
		return nil
	}
	return err
}

// finish applies directory metadata deepest first, so setting a child's
// mtime cannot disturb its parent's.
func (x *extractor) finish() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		fi, err := x.root.Lstat(d.name)
		if err != nil || !fi.IsDir() {
			continue // replaced by a later entry of the archive
		}
		if err := x.chown(func() error { return x.root.Lchown(d.name, d.uid, d.gid) }); err != nil {
			return newError(WriteFailed, err, "cannot set the owner of %q", d.name)
		}
		// An unprivileged agent owns what it created, but not the target's root when the volume
		// came with one: its mode and mtime stay, as its owner does.
		if err := x.chown(func() error { return x.root.Chmod(d.name, d.mode) }); err != nil {
			return newError(WriteFailed, err, "cannot set the mode of %q", d.name)
		}
		if err := x.chown(func() error { return x.root.Chtimes(d.name, time.Time{}, d.mtime) }); err != nil {
			return newError(WriteFailed, err, "cannot set the modification time of %q", d.name)
		}
	}
	return nil
}
