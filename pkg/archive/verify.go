package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"io"
)

// VerifyStats describes a verified archive.
type VerifyStats struct {
	Archive     string      `json:"archive"`
	SHA256      string      `json:"sha256"`
	Compression Compression `json:"compression"`
	// Encryption is "age" for an encrypted archive.
	Encryption string `json:"encryption,omitempty"`
	// ContentsChecked is false when the archive is encrypted and no identity was given: its
	// checksum was verified, its contents could not be.
	ContentsChecked bool `json:"contentsChecked"`
	// Size is the archive's size in bytes.
	Size int64 `json:"size"`
	// Bytes is the total size of the regular files in the archive.
	Bytes       int64 `json:"bytes"`
	Files       int64 `json:"files"`
	Directories int64 `json:"directories"`
	Symlinks    int64 `json:"symlinks"`
	Hardlinks   int64 `json:"hardlinks"`
	// Other counts entries of other types (devices, pipes), which restore skips.
	Other int64 `json:"other"`
	// Format is FormatFile for a file archive, whose content is restored as FileName; omitted
	// for a tar.
	Format   StreamFormat `json:"format,omitempty"`
	FileName string       `json:"fileName,omitempty"`
}

// Verify proves an archive file is intact in one read: its sha256 must equal
// want, and it must decompress and parse as tar to the end.
func Verify(ctx context.Context, archive, want string) (*VerifyStats, error) {
	if archive == "" {
		return nil, newError(InvalidArgument, nil, "--archive is required: pass the archive file to verify")
	}
	if _, err := normalizeSHA256(want); err != nil {
		return nil, err
	}
	src, err := OpenFile(archive)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return VerifySource(ctx, src, want, nil)
}

// VerifySource is Verify of an archive on any storage. An encrypted archive is decrypted with
// ids to check its contents; without them, only its checksum is verified, which needs no key
// because it is that of the ciphertext, and ContentsChecked says so.
func VerifySource(ctx context.Context, src Source, want string, ids *Identities) (*VerifyStats, error) {
	return verifySource(ctx, src, want, ids, Format{})
}

// VerifyFileArchive is VerifySource of a file archive (FormatFile) whose content is restored as
// fileName (DefaultFileName when empty): its checksum, then, with the identities when it is
// encrypted, that its content decompresses to the end. Its name must be that of fileName's
// archive (see FileFormatForName).
func VerifyFileArchive(ctx context.Context, src Source, want string, ids *Identities, fileName string) (*VerifyStats, error) {
	if fileName == "" {
		fileName = DefaultFileName
	}
	if err := CheckFileName(fileName); err != nil {
		return nil, err
	}
	format, err := archiveFormat(src.Name(), FormatFile, fileName)
	if err != nil {
		return nil, err
	}
	return verifySource(ctx, src, want, ids, format)
}

// verifySource is VerifySource of an archive in format: a file archive when format.FileName is
// set, else a tar.
func verifySource(ctx context.Context, src Source, want string, ids *Identities, format Format) (*VerifyStats, error) {
	want, err := normalizeSHA256(want)
	if err != nil {
		return nil, err
	}
	archive := src.Name()
	stats := &VerifyStats{Archive: archive, Size: src.Size()}
	if format.FileName != "" {
		stats.Format, stats.FileName = FormatFile, format.FileName
	}
	f, err := src.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	hr := newHashingReader(f)
	br := bufio.NewReaderSize(hr, copyBufferSize)
	buf := make([]byte, copyBufferSize)
	var parseErr error
	head, _ := br.Peek(len(ageMagic))
	if encrypted := isEncrypted(head); encrypted {
		stats.Encryption = EncryptionAge
	}
	if stats.Encryption == "" || ids != nil {
		stats.ContentsChecked = true
		parseErr = readPlaintext(ctx, stats, archive, br, ids, buf, format)
	}
	if ReasonOf(parseErr) == Canceled {
		return nil, parseErr
	}
	// Hash whatever the parser did not consume, so a parse error never hides
	// which of the two failed.
	if _, err := io.CopyBuffer(io.Discard, br, buf); err != nil {
		return nil, newError(ReadFailed, err, "cannot read archive %s", archive)
	}
	stats.SHA256 = hr.sum()
	if stats.SHA256 != want {
		e := mismatch(archive, want, stats.SHA256)
		e.Err = parseErr
		return stats, e
	}
	if r := ReasonOf(parseErr); r == WrongEncryptionKey || r == CorruptArchive {
		return stats, parseErr
	}
	if parseErr != nil && stats.Format == FormatFile {
		return stats, corruptFile(archive, stats.Compression, parseErr)
	}
	if parseErr != nil {
		return stats, corrupt(archive, stats.Compression, parseErr)
	}
	return stats, nil
}

// readPlaintext is readTar of the archive r, called name, decrypted with ids when it is
// encrypted; or, for a file archive in format, readFile.
func readPlaintext(ctx context.Context, stats *VerifyStats, name string, r io.Reader, ids *Identities, buf []byte, format Format) error {
	br, err := plaintext(name, r, ids)
	if err != nil {
		return err
	}
	defer br.Close()
	if format.FileName != "" {
		stats.Compression = format.Compression
		return readFile(ctx, stats, br, buf)
	}
	head, _ := br.Peek(len(zstdMagic))
	stats.Compression = sniff(head)
	return readTar(ctx, stats, br, buf)
}

// readFile decompresses a file archive's whole stream, counting its bytes as one file's.
func readFile(ctx context.Context, stats *VerifyStats, r io.Reader, buf []byte) error {
	dec, err := newDecompressor(stats.Compression, r)
	if err != nil {
		return err
	}
	defer dec.Close()
	n, err := io.CopyBuffer(io.Discard, &ctxReader{ctx: ctx, r: dec}, buf)
	stats.Bytes += n
	if err := ctx.Err(); err != nil {
		return newError(Canceled, err, "verification interrupted; run it again")
	}
	if err != nil {
		return err
	}
	stats.Files = 1
	return nil
}

// readTar decompresses and parses the whole stream, counting entries; the
// decompressor is read to its end so its own frame checksums are checked.
func readTar(ctx context.Context, stats *VerifyStats, r io.Reader, buf []byte) error {
	dec, err := newDecompressor(stats.Compression, r)
	if err != nil {
		return err
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		if err := ctx.Err(); err != nil {
			return newError(Canceled, err, "verification interrupted; run it again")
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			stats.Directories++
		case tar.TypeReg, '\x00', tar.TypeGNUSparse, tar.TypeCont:
			stats.Files++
		case tar.TypeSymlink:
			stats.Symlinks++
		case tar.TypeLink:
			stats.Hardlinks++
		default:
			stats.Other++
		}
		for {
			n, err := tr.Read(buf)
			stats.Bytes += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	for {
		_, err := dec.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
