package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"

	"filippo.io/age"
)

// Archives are encrypted with age (age-encryption.org/v1): X25519 recipients and
// ChaCha20-Poly1305 in 64 KiB chunks, applied to the compressed stream, so that
// `age -d -i key.txt x.tar.zst.age | tar --zstd -x` restores one in an emergency. Only X25519
// keys are accepted, the kind every age release reads, Debian's included.
const (
	// EncryptionAge names age encryption in manifests and results.
	EncryptionAge = "age"
	// EncryptedExtension follows the compression's extension in an encrypted archive's name.
	EncryptedExtension = ".age"
	// fingerprintDigits is how much of a key's sha256 names it: 64 bits tell keys apart
	// without making a fingerprint look like a key.
	fingerprintDigits = 16
)

// ageMagic starts every age file.
var ageMagic = []byte("age-encryption.org/v1\n")

// Encryption is how an archive is encrypted, as its manifest and the agent's results record it:
// the kind and the fingerprints of the public keys that can decrypt it, never a key.
type Encryption struct {
	// Type is EncryptionAge.
	Type string `json:"type"`
	// RecipientFingerprints name the recipients (see Fingerprint).
	RecipientFingerprints []string `json:"recipientFingerprints"`
}

// Fingerprint names the age public key recipient (age1...) without quoting it: the first 16
// hex digits of the sha256 of its text, which `printf %s age1... | sha256sum | cut -c1-16`
// computes too.
func Fingerprint(recipient string) string {
	sum := sha256.Sum256([]byte(recipient))
	return hex.EncodeToString(sum[:])[:fingerprintDigits]
}

// Recipients are the public keys a backup encrypts to.
type Recipients struct {
	keys         []age.Recipient
	fingerprints []string
}

// ParseRecipients reads age public keys from texts in the format of age -R: one per line,
// blank lines and lines starting with "#" ignored. A key given twice counts once. It returns
// nil when the texts hold no key at all, and an InvalidArgument error naming the source and
// line of anything that is not an X25519 public key.
func ParseRecipients(sources map[string]string) (*Recipients, error) {
	var r Recipients
	seen := map[string]bool{}
	for _, name := range sortedKeys(sources) {
		err := eachKeyLine(sources[name], func(n int, line string) error {
			k, err := age.ParseX25519Recipient(line)
			if err != nil {
				return newError(InvalidArgument, nil, "%s, line %d: not an age public key (age1...): %s; generate a key pair with age-keygen and pass the public key it prints", name, n, shortError(err))
			}
			if s := k.String(); !seen[s] {
				seen[s] = true
				r.keys = append(r.keys, k)
				r.fingerprints = append(r.fingerprints, Fingerprint(s))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(r.keys) == 0 {
		return nil, nil
	}
	return &r, nil
}

// Encryption describes archives encrypted to r.
func (r *Recipients) Encryption() *Encryption {
	return &Encryption{Type: EncryptionAge, RecipientFingerprints: slices.Clone(r.fingerprints)}
}

// Identities are the private keys a restore decrypts with.
type Identities struct {
	keys []age.Identity
	// fingerprints are those of the identities' public keys.
	fingerprints []string
	// Wanted are the fingerprints of the recipients the archive was encrypted to, as its
	// Backup recorded them, when known: errors name them, so that people know which key to
	// find. age's header does not say.
	Wanted []string
}

// ParseIdentities reads age identities (AGE-SECRET-KEY-1...) from texts in the format
// age-keygen writes: one per line, blank lines and "#" comments ignored. It returns nil when
// the texts hold none, and an InvalidArgument error naming the source and line of anything
// else, without quoting it: it may be a secret.
func ParseIdentities(sources map[string]string) (*Identities, error) {
	var ids Identities
	for _, name := range sortedKeys(sources) {
		err := eachKeyLine(sources[name], func(n int, line string) error {
			k, err := age.ParseX25519Identity(line)
			if err != nil {
				return newError(InvalidArgument, nil, "%s, line %d: not an age identity (AGE-SECRET-KEY-1...): pass the file age-keygen wrote", name, n)
			}
			ids.keys = append(ids.keys, k)
			ids.fingerprints = append(ids.fingerprints, Fingerprint(k.Recipient().String()))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(ids.keys) == 0 {
		return nil, nil
	}
	return &ids, nil
}

// Fingerprints name the public keys of the identities.
func (ids *Identities) Fingerprints() []string { return slices.Clone(ids.fingerprints) }

// eachKeyLine calls f with the number and text of each line of text that is not blank or a
// comment.
func eachKeyLine(text string, f func(n int, line string) error) error {
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := f(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return newError(InvalidArgument, err, "cannot read the keys")
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// shortError is age's message without its package prefix.
func shortError(err error) string {
	return strings.TrimPrefix(err.Error(), "malformed recipient ")
}

// encrypter wraps w so that what is written to it reaches w encrypted to r; closing it writes
// the last chunk but does not close w. With no recipients it is w itself.
func encrypter(r *Recipients, w io.Writer) (io.WriteCloser, error) {
	if r == nil {
		return nopWriteCloser{w}, nil
	}
	ew, err := age.Encrypt(w, r.keys...)
	if err != nil {
		return nil, writeError(err, "cannot start the encryption")
	}
	return ew, nil
}

// isEncrypted reports whether an archive's first bytes are age's.
func isEncrypted(head []byte) bool { return bytes.HasPrefix(head, ageMagic) }

// decrypter returns the plaintext of the encrypted archive r, called name, for ids: a
// missing or wrong identity is an error that names the keys involved, by fingerprint, and what
// to pass instead.
func decrypter(name string, r io.Reader, ids *Identities) (io.Reader, error) {
	if ids == nil || len(ids.keys) == 0 {
		return nil, keyMissing(name)
	}
	dr, err := age.Decrypt(r, ids.keys...)
	var noMatch *age.NoIdentityMatchError
	switch {
	case errors.As(err, &noMatch):
		return nil, newError(WrongEncryptionKey, nil, "archive %s is not encrypted to the identity given (public key fingerprint %s), so nothing was written: pass the identity of %s", name, strings.Join(ids.fingerprints, ", "), recipientsWanted(ids.Wanted))
	case err != nil:
		return nil, newError(CorruptArchive, err, "archive %s has no valid age header", name)
	}
	return dr, nil
}

// keyMissing is the error of an encrypted archive read without an identity.
func keyMissing(name string) *Error {
	return newError(EncryptionKeyMissing, nil, "archive %s is encrypted with age and no identity was given, so nothing was written: pass the identity of one of its recipients (--identity-file, or %s)", name, EnvIdentity)
}

// recipientsWanted names the keys that can decrypt an archive, for people.
func recipientsWanted(fingerprints []string) string {
	if len(fingerprints) == 0 {
		return "one of the recipients that the archive's manifest lists by fingerprint"
	}
	return "one of its recipients, the public keys with fingerprints " + strings.Join(fingerprints, ", ")
}

// Environment variables the agent reads keys from, so that pods get them from a Secret or a
// ConfigMap without the keys ever being on a command line.
const (
	// EnvRecipients holds recipients, in the format of an age -R file.
	EnvRecipients = "AGE_RECIPIENTS"
	// EnvIdentity holds identities, in the format of an age-keygen file.
	EnvIdentity = "AGE_IDENTITY"
)
