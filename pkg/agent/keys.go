package agent

import (
	"flag"
	"os"
	"strings"

	"platform.example.com/backup-operator/pkg/archive"
)

// keyFlags are where the age keys of encrypted archives come from. Pods get them from the
// environment (a ConfigMap's recipients, a Secret's identity) so that no key is ever on a
// command line, where the pod's spec and the process list would show it.
type keyFlags struct {
	recipients     stringList
	recipientsFile string
	identityFile   string
	wanted         string
}

// stringList is a flag that may be given more than once.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// withRecipients registers the flags of the keys a backup encrypts to.
func (c *command) withRecipients() *command {
	c.fs.Var(&c.keys.recipients, "recipient", "age public key (age1...) to encrypt the archive to; repeat for several (also read: the lines of "+archive.EnvRecipients+")")
	c.fs.StringVar(&c.keys.recipientsFile, "recipients-file", "", "file of age public keys, one per line, as age -R reads it")
	return c
}

// withIdentity registers the flag of the keys a restore decrypts with.
func (c *command) withIdentity() *command {
	c.fs.StringVar(&c.keys.identityFile, "identity-file", "", "file of age identities (AGE-SECRET-KEY-1...), as age-keygen writes it, to decrypt an encrypted archive (also read: "+archive.EnvIdentity+")")
	c.fs.StringVar(&c.keys.wanted, "recipient-fingerprints", "", "comma-separated fingerprints of the keys the archive was encrypted to, as its Backup recorded them; errors name them")
	return c
}

// recipients are the keys of --recipient, --recipients-file and the environment; nil when
// there are none, so the archive is not encrypted.
func (c *command) recipients() (*archive.Recipients, error) {
	sources, err := keySources(c.keys.recipientsFile, archive.EnvRecipients)
	if err != nil {
		return nil, err
	}
	if len(c.keys.recipients) > 0 {
		sources["--recipient"] = strings.Join(c.keys.recipients, "\n")
	}
	return archive.ParseRecipients(sources)
}

// identities are the keys of --identity-file and the environment; nil when there are none.
func (c *command) identities() (*archive.Identities, error) {
	sources, err := keySources(c.keys.identityFile, archive.EnvIdentity)
	if err != nil {
		return nil, err
	}
	ids, err := archive.ParseIdentities(sources)
	if ids != nil && c.keys.wanted != "" {
		ids.Wanted = strings.Split(c.keys.wanted, ",")
	}
	return ids, err
}

// keySources reads the key file, when one is named, and the environment variable env, keyed by
// where each came from so that a parse error can say which.
func keySources(file, env string) (map[string]string, error) {
	sources := map[string]string{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, &archive.Error{Reason: archive.InvalidArgument, Msg: "cannot read the key file " + file, Err: err}
		}
		sources[file] = string(b)
	}
	if v, ok := os.LookupEnv(env); ok {
		sources["environment variable "+env] = v
	}
	return sources, nil
}

var _ flag.Value = (*stringList)(nil)
