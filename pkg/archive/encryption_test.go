package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// marker is written into the source tree so that a test can look for plaintext in an archive.
const marker = "plaintext-marker-4f1d9c"

// keyPair is a fresh age identity and its public key.
func keyPair(t testing.TB) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient().String()
}

func recipientsOf(t testing.TB, keys ...string) *Recipients {
	t.Helper()
	r, err := ParseRecipients(map[string]string{"test": strings.Join(keys, "\n")})
	if err != nil || r == nil {
		t.Fatalf("ParseRecipients: %v, %v", r, err)
	}
	return r
}

func identitiesOf(t testing.TB, ids ...*age.X25519Identity) *Identities {
	t.Helper()
	var lines []string
	for _, id := range ids {
		lines = append(lines, "# created: a comment, as age-keygen writes it", id.String())
	}
	parsed, err := ParseIdentities(map[string]string{"test": strings.Join(lines, "\n")})
	if err != nil || parsed == nil {
		t.Fatalf("ParseIdentities: %v, %v", parsed, err)
	}
	return parsed
}

// encryptedBackup archives a tree holding marker into dir, encrypted to keys.
func encryptedBackup(t *testing.T, src, dir string, keys ...string) *BackupStats {
	t.Helper()
	makeTree(t, src)
	if err := os.WriteFile(filepath.Join(src, "marker.txt"), bytes.Repeat([]byte(marker+"\n"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	// Data that does not compress, so that the ciphertext spans several of age's chunks.
	noise := make([]byte, 200<<10)
	rand.Read(noise)
	if err := os.WriteFile(filepath.Join(src, "noise.bin"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	stats, err := Backup(context.Background(), BackupOptions{Source: src, Output: filepath.Join(dir, "backup.tar.zst.age"),
		Recipients: recipientsOf(t, keys...), ToolVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

func TestEncryptedRoundTrip(t *testing.T) {
	alice, alicePub := keyPair(t)
	escrow, escrowPub := keyPair(t)
	src, out := t.TempDir(), t.TempDir()
	stats := encryptedBackup(t, src, out, alicePub, escrowPub, alicePub)

	want := []string{Fingerprint(alicePub), Fingerprint(escrowPub)}
	if stats.Encryption == nil || stats.Encryption.Type != EncryptionAge || strings.Join(stats.Encryption.RecipientFingerprints, ",") != strings.Join(want, ",") {
		t.Fatalf("encryption %+v, want age to %v (the repeated key once)", stats.Encryption, want)
	}
	data, err := os.ReadFile(stats.Archive)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, ageMagic) || bytes.Contains(data, []byte(marker)) || sha256Hex(data) != stats.SHA256 {
		t.Fatalf("the archive is not age ciphertext of the data hashed as %s", stats.SHA256)
	}
	mb, err := os.ReadFile(stats.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	if m.ManifestVersion != 2 || m.Encryption == nil || len(m.Encryption.RecipientFingerprints) != 2 || m.Archive != "backup.tar.zst.age" || m.Compression != Zstd {
		t.Fatalf("manifest %+v, want version 2 naming the encryption", m)
	}
	if bytes.Contains(mb, []byte(alicePub)) || bytes.Contains(mb, []byte("AGE-SECRET")) {
		t.Fatalf("the manifest holds a key: %s", mb)
	}
	sum, err := os.ReadFile(stats.ChecksumFile)
	if err != nil || string(sum) != stats.SHA256+"  backup.tar.zst.age\n" {
		t.Fatalf("checksum file %q (%v)", sum, err)
	}

	// Each recipient's identity restores it alone.
	for name, id := range map[string]*age.X25519Identity{"alice": alice, "escrow": escrow} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			r, err := Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256, Identities: identitiesOf(t, id)})
			if err != nil {
				t.Fatal(err)
			}
			if r.Encryption != EncryptionAge || r.Compression != Zstd || r.Files != stats.Files || r.Bytes != stats.SourceBytes {
				t.Errorf("restore stats %+v, backup %+v", r, stats)
			}
			compareTrees(t, src, dst)
		})
	}

	// Verify: the checksum needs no key; the contents do.
	src2, err := OpenFile(stats.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	v, err := VerifySource(context.Background(), src2, stats.SHA256, nil)
	if err != nil || v.ContentsChecked || v.Encryption != EncryptionAge || v.Files != 0 {
		t.Fatalf("verify without an identity: %+v, %v; want the checksum only", v, err)
	}
	v, err = VerifySource(context.Background(), src2, stats.SHA256, identitiesOf(t, escrow))
	if err != nil || !v.ContentsChecked || v.Files != stats.Files || v.Bytes != stats.SourceBytes {
		t.Fatalf("verify with an identity: %+v, %v; backup %+v", v, err, stats)
	}
}

func TestEncryptedArchiveRefusesOtherKeys(t *testing.T) {
	_, alicePub := keyPair(t)
	mallory, _ := keyPair(t)
	src, out := t.TempDir(), t.TempDir()
	stats := encryptedBackup(t, src, out, alicePub)

	dst := t.TempDir()
	_, err := Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256, Identities: identitiesOf(t, mallory)})
	wantReason(t, err, WrongEncryptionKey)
	if fp := Fingerprint(mallory.Recipient().String()); !strings.Contains(err.Error(), fp) || strings.Contains(err.Error(), mallory.String()) {
		t.Errorf("error %q should name the identity's fingerprint %s, never the identity", err, fp)
	}
	if names := listDir(t, dst); len(names) != 0 {
		t.Errorf("a wrong key wrote %v", names)
	}

	_, err = Restore(context.Background(), RestoreOptions{Archive: stats.Archive, Target: dst, SHA256: stats.SHA256})
	wantReason(t, err, EncryptionKeyMissing)

	// A renamed archive is still recognised by its header.
	renamed := filepath.Join(out, "renamed.tar.zst")
	if err := os.Link(stats.Archive, renamed); err != nil {
		t.Fatal(err)
	}
	_, err = Restore(context.Background(), RestoreOptions{Archive: renamed, Target: dst, SHA256: stats.SHA256})
	wantReason(t, err, EncryptionKeyMissing)
	if names := listDir(t, dst); len(names) != 0 {
		t.Errorf("a missing key wrote %v", names)
	}

	s, err := OpenFile(stats.Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = VerifySource(context.Background(), s, stats.SHA256, identitiesOf(t, mallory))
	wantReason(t, err, WrongEncryptionKey)
}

// TestTamperedCiphertextWritesNothing: the checksum is of the ciphertext, so a damaged object
// is refused before anything is decrypted or written; and a damage recorded in the checksum is
// still caught, by age's authentication.
func TestTamperedCiphertextWritesNothing(t *testing.T) {
	alice, alicePub := keyPair(t)
	src, out := t.TempDir(), t.TempDir()
	stats := encryptedBackup(t, src, out, alicePub)
	orig, err := os.ReadFile(stats.Archive)
	if err != nil {
		t.Fatal(err)
	}
	// The payload starts after the header's last line ("--- MAC") and a 16-byte nonce, and
	// is sealed in chunks of 64 KiB and a 16-byte tag.
	macLine := bytes.Index(orig, []byte("\n---")) + 1
	payload := macLine + bytes.IndexByte(orig[macLine:], '\n') + 1 + 16
	cases := map[string][]byte{
		"flipped payload byte": func() []byte {
			b := bytes.Clone(orig)
			b[len(b)/2] ^= 0x01
			return b
		}(),
		"flipped header byte": func() []byte {
			b := bytes.Clone(orig)
			b[len(ageMagic)+10] ^= 0x01
			return b
		}(),
		"truncated":                orig[:len(orig)-1],
		"cut after the header":     orig[:payload],
		"cut at a chunk boundary":  orig[:payload+64<<10+16],
		"extended with a new byte": append(bytes.Clone(orig), 0),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.tar.zst.age")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			dst := t.TempDir()
			_, err := Restore(context.Background(), RestoreOptions{Archive: p, Target: dst, SHA256: stats.SHA256, Identities: identitiesOf(t, alice)})
			wantReason(t, err, ChecksumMismatch)
			if names := listDir(t, dst); len(names) != 0 {
				t.Errorf("restore of a tampered archive wrote %v", names)
			}
			s, err := OpenFile(p)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = VerifySource(context.Background(), s, stats.SHA256, nil)
			wantReason(t, err, ChecksumMismatch)
			// Recorded with the damage in: age's authentication rejects it. A damaged
			// recipient stanza cannot be told from one for another key.
			_, err = VerifySource(context.Background(), s, sha256Hex(data), identitiesOf(t, alice))
			if name == "flipped header byte" {
				wantReason(t, err, WrongEncryptionKey)
			} else {
				wantReason(t, err, CorruptArchive)
			}
		})
	}
}

func TestEncryptedBackupArguments(t *testing.T) {
	_, pub := keyPair(t)
	src, out := t.TempDir(), t.TempDir()
	cases := []struct {
		name, output string
		recipients   *Recipients
		want         string
	}{
		{"recipients but a plain name", "a.tar.zst", recipientsOf(t, pub), "a.tar.zst.age"},
		{"an encrypted name without recipients", "a.tar.zst.age", nil, "no recipient"},
		{"gzip, encrypted", "a.tar.gz.age", recipientsOf(t, pub), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Backup(context.Background(), BackupOptions{Source: src, Output: filepath.Join(out, tc.output), Recipients: tc.recipients})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantReason(t, err, InvalidArgument)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	if f, ok := FormatForName("x/a.tar.gz.age"); !ok || f.Compression != Gzip || !f.Encrypted || TrimExtension("a.tar.gz.age") != "a" {
		t.Errorf("FormatForName: %+v %v", f, ok)
	}
	if _, ok := FormatForName("a.age"); ok {
		t.Error("a.age has no tar extension and must not be an archive")
	}
}

func TestParseKeys(t *testing.T) {
	id, pub := keyPair(t)
	r, err := ParseRecipients(map[string]string{"config map": "# team keys\n\n" + pub + "\n", "flag": pub})
	if err != nil || len(r.fingerprints) != 1 {
		t.Fatalf("recipients %+v, %v: want one key", r, err)
	}
	if r, err := ParseRecipients(map[string]string{"flag": "  \n# nothing\n"}); r != nil || err != nil {
		t.Fatalf("no keys: %v, %v; want nil", r, err)
	}
	_, err = ParseRecipients(map[string]string{"environment variable AGE_RECIPIENTS": pub + "\nssh-ed25519 AAAA"})
	wantReason(t, err, InvalidArgument)
	if !strings.Contains(err.Error(), "environment variable AGE_RECIPIENTS, line 2") {
		t.Errorf("error %q does not say where", err)
	}
	_, err = ParseIdentities(map[string]string{"key.txt": id.String() + "\nAGE-SECRET-KEY-1NOTAKEY"})
	wantReason(t, err, InvalidArgument)
	if !strings.Contains(err.Error(), "key.txt, line 2") || strings.Contains(err.Error(), "NOTAKEY") {
		t.Errorf("error %q should say where, and never quote a secret", err)
	}
	ids := identitiesOf(t, id)
	if got := ids.Fingerprints(); len(got) != 1 || got[0] != Fingerprint(pub) || len(got[0]) != 16 {
		t.Errorf("fingerprints %v, want [%s]", got, Fingerprint(pub))
	}
}

// TestAgeCanRestore proves the emergency path: Debian's age and tar alone restore an encrypted
// archive, after sha256sum checked it.
func TestAgeCanRestore(t *testing.T) {
	for _, tool := range []string{"age", "tar", "zstd", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; CI installs it", tool)
			}
			t.Skipf("%s is not installed (apt-get install %s)", tool, tool)
		}
	}
	id, pub := keyPair(t)
	src, out, dst := t.TempDir(), t.TempDir(), t.TempDir()
	stats := encryptedBackup(t, src, out, pub)
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := exec.Command("sha256sum", "-c", filepath.Base(stats.ChecksumFile))
	check.Dir = out
	if b, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
	cmd := exec.Command("sh", "-c", `age -d -i "$1" "$2" | tar --zstd --numeric-owner -xpf - -C "$3"`, "sh", keyFile, stats.Archive, dst)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -d | tar -x: %v\n%s", err, b)
	}
	compareTrees(t, src, dst)
}

// FuzzRestoreEncrypted feeds the encrypted restore path: arbitrary bytes as the ciphertext, and
// arbitrary tar streams inside a valid age stream. Whatever the input, it must not panic and
// nothing outside the target may change.
//
//	go test ./pkg/archive -run '^$' -fuzz '^FuzzRestoreEncrypted$' -fuzztime 20s
func FuzzRestoreEncrypted(f *testing.F) {
	const outside = "/tmp/fuzz-outside-placeholder"
	id, pub := keyPair(f)
	ids, rs := identitiesOf(f, id), recipientsOf(f, pub)
	for _, tc := range hostileCases {
		f.Add(buildTar(f, outside, tc.entries), true)
	}
	f.Add(buildTar(f, outside, []entry{{name: "dir/", typ: tar.TypeDir}, {name: "dir/file", typ: tar.TypeReg, body: "content"}}), true)
	f.Add(append(bytes.Clone(ageMagic), "-> X25519 AAAA\n--- AAAA\n"...), false)

	parent, sibling, before := fuzzSandbox(f)
	archive := filepath.Join(parent, "fuzz.tar.zst.age")
	f.Fuzz(func(t *testing.T, data []byte, encrypt bool) {
		if encrypt {
			data = bytes.ReplaceAll(data, []byte(outside), []byte(sibling))
			var buf bytes.Buffer
			w, err := encrypter(rs, &buf)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			data = buf.Bytes()
		}
		if err := os.WriteFile(archive, data, 0o600); err != nil {
			t.Fatal(err)
		}
		target, err := os.MkdirTemp(parent, "target")
		if err != nil {
			t.Fatal(err)
		}
		defer removeTree(target)
		_, _ = Restore(context.Background(), RestoreOptions{Archive: archive, Target: target, SHA256: sha256Hex(data), Overwrite: OverwriteMerge, Identities: ids})
		for _, n := range listDir(t, parent) {
			if n != "sibling" && n != filepath.Base(target) && n != filepath.Base(archive) {
				t.Fatalf("%s was created outside the target", n)
			}
		}
		assertSame(t, before, snapshot(t, sibling))
	})
}
