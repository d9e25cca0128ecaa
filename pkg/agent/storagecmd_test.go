package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"platform.example.com/backup-operator/pkg/archive"
	"platform.example.com/backup-operator/pkg/storage"
)

func TestStorageCheckOfADirectory(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"db/data/nightly.tar.zst": "archive"})

	var rw StorageCheckResult
	if code, stderr := run(t, &rw, "storage", "check", "--location", dir); code != ExitOK || !rw.Succeeded() {
		t.Fatalf("check exit %d: %s", code, stderr)
	}
	if rw.Operation != OpStorageCheck || rw.Location != dir || !rw.Writable || rw.Versioning || rw.ObjectLock {
		t.Fatalf("result %+v, want a writable directory without bucket features", rw)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "db" {
		t.Fatalf("the check left %v (%v) behind, want only what was there", entries, err)
	}

	// Either read-only flag serves a directory: the controller passes --read-only for a claim
	// and --s3-read-only for a bucket, and a person may type either.
	for _, flag := range []string{"--read-only", "--s3-read-only"} {
		var ro StorageCheckResult
		if code, stderr := run(t, &ro, "storage", "check", "--location", dir, flag); code != ExitOK || ro.Writable {
			t.Fatalf("%s: exit %d, writable %v: %s; want reading proven and no write", flag, code, ro.Writable, stderr)
		}
	}
}

func TestStorageCheckFailures(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	tests := []struct {
		name   string
		args   []string
		code   int
		reason archive.Reason
		says   string
	}{
		{"no subcommand", []string{"storage"}, ExitUsage, archive.InvalidArgument, "use storage check or storage list"},
		{"an unknown subcommand", []string{"storage", "prune"}, ExitUsage, archive.InvalidArgument, `unknown subcommand "prune"`},
		{"no location", []string{"storage", "check"}, ExitUsage, archive.InvalidArgument, "no storage location"},
		{"an s3 location without a bucket", []string{"storage", "check", "--location", "s3://"}, ExitUsage, archive.InvalidArgument, "is not s3://BUCKET[/PREFIX]"},
		{"an s3 location without an endpoint", []string{"storage", "check", "--location", "s3://backups"}, ExitUsage, archive.InvalidArgument, "S3 endpoint"},
		{"a directory that does not exist", []string{"storage", "check", "--location", missing}, ExitFailed, archive.ReadFailed, "cannot list " + missing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res StorageCheckResult
			code, _ := run(t, &res, tc.args...)
			op := OpStorageCheck
			if len(tc.args) < 2 || tc.args[1] != "check" {
				op = "storage"
			}
			if code != tc.code || res.Reason != tc.reason || !strings.Contains(res.Error, tc.says) || res.Operation != op {
				t.Fatalf("exit %d, %s result %s: %q; want exit %d, %s saying %q", code, res.Operation, res.Reason, res.Error, tc.code, tc.reason, tc.says)
			}
		})
	}
}

func TestStorageCheckOfABucketPrefix(t *testing.T) {
	s3 := newFakeS3(t, "")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	args := []string{"storage", "check", "--location", "s3://backups/team/prod", "--s3-endpoint", s3.URL, "--s3-region", "us-east-1", "--s3-force-path-style"}

	var rw StorageCheckResult
	if code, stderr := run(t, &rw, args...); code != ExitOK || !rw.Succeeded() {
		t.Fatalf("check exit %d: %s", code, stderr)
	}
	if rw.Location != "s3://backups/team/prod" || !rw.Writable || !rw.Versioning || !rw.ObjectLock || rw.ObjectLockMode != "GOVERNANCE" || rw.ObjectLockDays != 30 {
		t.Fatalf("result %+v, want writable with versioning and a 30-day GOVERNANCE lock", rw)
	}
	reqs := s3.requests()
	if !s3.saw("GET /backups/ prefix=team/prod/") || !s3.saw("POST /backups/team/prod/.backup-operator-check-") || !s3.saw("DELETE /backups/team/prod/.backup-operator-check-") {
		t.Fatalf("requests %q: want a listing of the prefix and an aborted upload below it", reqs)
	}
	if !s3.signedBy("AKIDTEST") {
		t.Fatal("requests were not signed with the access key from the environment")
	}

	var ro StorageCheckResult
	s3.reset()
	if code, stderr := run(t, &ro, append(args, "--read-only")...); code != ExitOK || ro.Writable {
		t.Fatalf("read-only check exit %d, writable %v: %s", code, ro.Writable, stderr)
	}
	if s3.saw("POST ") || s3.saw("DELETE ") {
		t.Fatalf("a read-only check wrote: %q", s3.requests())
	}
}

func TestStorageCheckReportsTheServersRefusal(t *testing.T) {
	for _, tc := range []struct {
		code   string
		reason archive.Reason
	}{
		{"AccessDenied", archive.StorageAccessDenied},
		{"NoSuchBucket", archive.StorageBucketNotFound},
	} {
		t.Run(tc.code, func(t *testing.T) {
			s3 := newFakeS3(t, tc.code)
			var res StorageCheckResult
			code, _ := run(t, &res, "storage", "check", "--location", "s3://backups", "--s3-endpoint", s3.URL, "--s3-region", "us-east-1", "--s3-force-path-style")
			if code != ExitFailed || res.Reason != tc.reason || res.Writable {
				t.Fatalf("exit %d, result %+v; want exit %d with reason %s", code, res, ExitFailed, tc.reason)
			}
		})
	}
}

// runList runs `agent storage list` with args and splits what it prints: the archives, one JSON
// line each, and the result after them, which must also be the termination message.
func runList(t *testing.T, args ...string) (listed []storage.Listed, res StorageListResult, code int) {
	t.Helper()
	termLog := filepath.Join(t.TempDir(), "termination-log")
	var so, se bytes.Buffer
	code = Run(context.Background(), append(append([]string{"storage", "list"}, args...), "--termination-log", termLog), &so, &se)
	lines := strings.Split(strings.TrimSuffix(so.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		t.Fatalf("the last line is not the JSON result: %v\n%s", err, so.String())
	}
	if msg, err := os.ReadFile(termLog); err != nil || string(msg) != last {
		t.Fatalf("termination message %q (%v), want the result %q", msg, err, last)
	}
	for _, line := range lines[:len(lines)-1] {
		var l storage.Listed
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Key == "" {
			t.Fatalf("line %q is not a listed archive (%v); stderr: %s", line, err, se.String())
		}
		listed = append(listed, l)
	}
	return listed, res, code
}

func TestStorageListOfADirectory(t *testing.T) {
	src, store := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"PG_VERSION": "15\n"})
	for _, name := range []string{"data/nightly-2", "data/nightly-1", "logs/hourly"} {
		output := filepath.Join(store, "db", name+".tar.zst")
		if err := os.MkdirAll(filepath.Dir(output), 0o755); err != nil {
			t.Fatal(err)
		}
		var b BackupResult
		if code, stderr := run(t, &b, "backup", "--source", src, "--output", output,
			"--namespace", "db", "--pvc", filepath.Dir(name), "--policy", "daily", "--backup", filepath.Base(name), "--backup-uid", "uid-"+filepath.Base(name)); code != ExitOK {
			t.Fatalf("backup %s exit %d: %s", name, code, stderr)
		}
	}
	// A manifest whose archive is gone, as a deletion leaves it for a moment, and another
	// namespace's archives are not listed.
	writeFiles(t, store, map[string]string{
		"db/data/deleted.tar.zst.manifest.json": `{"manifestVersion":1}`,
		"web/www/nightly.tar.zst":               "x",
	})

	listed, res, code := runList(t, "--location", filepath.Join(store, "db"))
	if code != ExitOK || !res.Succeeded() || res.Operation != OpStorageList || res.Location != filepath.Join(store, "db") || res.Archives != 3 {
		t.Fatalf("exit %d, result %+v; want 3 archives listed", code, res)
	}
	var keys []string
	for _, l := range listed {
		keys = append(keys, l.Key)
	}
	if want := []string{"data/nightly-1.tar.zst", "data/nightly-2.tar.zst", "logs/hourly.tar.zst"}; strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("keys %q, want %q: relative to the location, in order", keys, want)
	}
	m := listed[0].Manifest
	if m.Namespace != "db" || m.PVC != "data" || m.Policy != "daily" || m.Backup != "nightly-1" || m.BackupUID != "uid-nightly-1" ||
		!archive.ValidSHA256(m.SHA256) || m.Size == 0 || m.Files != 1 || listed[0].LastModified.IsZero() {
		t.Fatalf("manifest %+v, want the origin and the numbers the backup recorded", m)
	}

	// A folder without archives is an empty list, not a failure: a namespace never backed up.
	if listed, res, code := runList(t, "--location", filepath.Join(store, "none")); code != ExitOK || res.Archives != 0 || len(listed) != 0 {
		t.Fatalf("exit %d, %d listed, result %+v; want an empty list", code, len(listed), res)
	}
}

func TestStorageListFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		reason archive.Reason
		says   string
	}{
		{"no location", nil, archive.InvalidArgument, "no storage location"},
		{"an s3 location without an endpoint", []string{"--location", "s3://backups/prod/db"}, archive.InvalidArgument, "S3 endpoint"},
		{"an argument without a flag", []string{"--location", "/storage", "db"}, archive.InvalidArgument, `unexpected argument "db"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listed, res, code := runList(t, tc.args...)
			if code != ExitUsage || res.Reason != tc.reason || !strings.Contains(res.Error, tc.says) || res.Operation != OpStorageList || len(listed) != 0 {
				t.Fatalf("exit %d, result %+v, %d listed; want exit %d with %s saying %q", code, res, len(listed), ExitUsage, tc.reason, tc.says)
			}
		})
	}
	t.Run("the server refuses", func(t *testing.T) {
		s3 := newFakeS3(t, "AccessDenied")
		listed, res, code := runList(t, "--location", "s3://backups/prod/db", "--s3-endpoint", s3.URL, "--s3-region", "us-east-1", "--s3-force-path-style")
		if code != ExitFailed || res.Reason != archive.StorageAccessDenied || len(listed) != 0 {
			t.Fatalf("exit %d, result %+v, %d listed; want AccessDenied and nothing listed", code, res, len(listed))
		}
		if !s3.saw("GET /backups/ prefix=prod/db/") || s3.saw("PUT ") || s3.saw("POST ") || s3.saw("DELETE ") {
			t.Fatalf("requests %q, want one listing of the namespace's folder and nothing written", s3.requests())
		}
	})
}

// fakeS3 answers what a storage check asks of a bucket with versioning and object lock on, or,
// with a failure code, refuses every request with it.
type fakeS3 struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
	auth []string
}

func newFakeS3(t *testing.T, failure string) *fakeS3 {
	f := &fakeS3{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		f.seen = append(f.seen, r.Method+" "+r.URL.Path+" prefix="+q.Get("prefix"))
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		if failure != "" {
			w.WriteHeader(map[string]int{"AccessDenied": http.StatusForbidden, "NoSuchBucket": http.StatusNotFound}[failure])
			w.Write([]byte(`<Error><Code>` + failure + `</Code><Message>refused</Message><BucketName>backups</BucketName><RequestId>1</RequestId></Error>`))
			return
		}
		switch {
		case q.Has("versioning"):
			w.Write([]byte(`<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>`))
		case q.Has("object-lock"):
			w.Write([]byte(`<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>`))
		case q.Has("uploads"):
			w.Write([]byte(`<InitiateMultipartUploadResult><Bucket>backups</Bucket><Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>`))
		case q.Has("uploadId"):
			w.WriteHeader(http.StatusNoContent)
		case q.Get("list-type") == "2":
			w.Write([]byte(`<ListBucketResult><Name>backups</Name><Prefix>` + q.Get("prefix") + `</Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`))
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeS3) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func (f *fakeS3) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen, f.auth = nil, nil
}

// saw reports whether a request starting with prefix ("METHOD /path prefix=...") was made.
func (f *fakeS3) saw(prefix string) bool {
	for _, r := range f.requests() {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

// signedBy reports whether every request was signed with the access key id.
func (f *fakeS3) signedBy(accessKeyID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.auth {
		if !strings.Contains(a, "Credential="+accessKeyID+"/") {
			return false
		}
	}
	return len(f.auth) > 0
}
