// Package names makes the deterministic names of the objects the operator creates. A name that
// is a function of what the object is for acts as a lock: a restarted or second controller that
// tries to create the same object gets AlreadyExists instead of making a duplicate.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxLength is the longest name Join returns: the limit of a label value and of a DNS-1123
// label, so a name can also be a label value (Jobs label their pods with their own name).
const MaxLength = 63

// hashLength is how many hex digits of the hash end a shortened name: 40 bits, so two distinct
// inputs that share a long prefix collide with odds of about one in a trillion.
const hashLength = 10

// Join joins parts with "-" into a valid DNS-1123 label of at most MaxLength characters. When
// the joined name is too long, it keeps as much of the start as fits and ends with a hash of the
// whole joined name, so distinct inputs stay distinct and the result is the same every time.
// Parts must already be DNS-1123 labels or subdomains (Kubernetes object names); dots become
// dashes.
func Join(parts ...string) string {
	full := strings.ReplaceAll(strings.Join(parts, "-"), ".", "-")
	if len(full) <= MaxLength {
		return full
	}
	sum := sha256.Sum256([]byte(full))
	suffix := hex.EncodeToString(sum[:])[:hashLength]
	prefix := strings.TrimRight(full[:MaxLength-hashLength-1], "-")
	return prefix + "-" + suffix
}
