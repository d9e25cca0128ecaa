package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one member of a hand-made archive; "outside" in names and link
// targets is replaced by the absolute path of the test's sibling directory.
type entry struct {
	name string
	typ  byte
	link string
	body string
}

func buildTar(t testing.TB, outside string, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:     strings.ReplaceAll(e.name, "OUTSIDE", outside),
			Linkname: strings.ReplaceAll(e.link, "OUTSIDE", outside),
			Typeflag: e.typ,
			Mode:     0o644,
			Size:     int64(len(e.body)),
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hostileCases are the classic tar-slip attacks. Each must be refused with
// UnsafeArchive and must leave the sibling directory untouched.
var hostileCases = []struct {
	name    string
	entries []entry
}{
	{"absolute path", []entry{{name: "OUTSIDE/pwned", typ: tar.TypeReg, body: "x"}}},
	{"dot-dot", []entry{{name: "../sibling/pwned", typ: tar.TypeReg, body: "x"}}},
	{"dot-dot inside the name", []entry{{name: "a/../../sibling/pwned", typ: tar.TypeReg, body: "x"}}},
	{"dot-dot directory", []entry{{name: "../sibling/newdir/", typ: tar.TypeDir}}},
	{"file below a relative symlink", []entry{
		{name: "lnk", typ: tar.TypeSymlink, link: "../sibling"},
		{name: "lnk/pwned", typ: tar.TypeReg, body: "x"},
	}},
	{"file below an absolute symlink", []entry{
		{name: "lnk", typ: tar.TypeSymlink, link: "OUTSIDE"},
		{name: "lnk/pwned", typ: tar.TypeReg, body: "x"},
	}},
	{"symlink chain", []entry{
		{name: "l1", typ: tar.TypeSymlink, link: "l2"},
		{name: "l2", typ: tar.TypeSymlink, link: "../sibling"},
		{name: "l1/pwned", typ: tar.TypeReg, body: "x"},
	}},
	{"directory replaced by a symlink", []entry{
		{name: "d/", typ: tar.TypeDir},
		{name: "d", typ: tar.TypeSymlink, link: "OUTSIDE"},
		{name: "d/pwned", typ: tar.TypeReg, body: "x"},
	}},
	{"directory entry below a symlink", []entry{
		{name: "lnk", typ: tar.TypeSymlink, link: "OUTSIDE"},
		{name: "lnk/sub/", typ: tar.TypeDir},
	}},
	{"symlink below a symlink", []entry{
		{name: "lnk", typ: tar.TypeSymlink, link: "OUTSIDE"},
		{name: "lnk/evil", typ: tar.TypeSymlink, link: "/"},
	}},
	{"hard link to an absolute path", []entry{{name: "hl", typ: tar.TypeLink, link: "OUTSIDE/secret"}}},
	{"hard link with dot-dot", []entry{{name: "hl", typ: tar.TypeLink, link: "../sibling/secret"}}},
	{"hard link through a symlink", []entry{
		{name: "lnk", typ: tar.TypeSymlink, link: "OUTSIDE"},
		{name: "hl", typ: tar.TypeLink, link: "lnk/secret"},
	}},
	{"hard link to a symlink, then below it", []entry{
		{name: "lnk", typ: tar.TypeSymlink, link: "OUTSIDE"},
		{name: "hl", typ: tar.TypeLink, link: "lnk"},
		{name: "hl/pwned", typ: tar.TypeReg, body: "x"},
	}},
	{"file named like the target", []entry{{name: "a/..", typ: tar.TypeReg, body: "x"}}},
	{"symlink named like the target", []entry{{name: ".", typ: tar.TypeSymlink, link: "OUTSIDE"}}},
}

// sandbox is a parent directory holding the restore target and a sibling
// with a secret, standing for everything outside the target.
func sandbox(t testing.TB) (target, sibling string) {
	t.Helper()
	parent := t.TempDir()
	target, sibling = filepath.Join(parent, "target"), filepath.Join(parent, "sibling")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sibling, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return target, sibling
}

// extractionModes restore directly, or with everything staged first
// (stage.go): entries are checked and placed by one path, reached two ways.
var extractionModes = []struct {
	name  string
	setup func(t *testing.T)
}{
	{"direct", func(t *testing.T) { setBudget(t, &stageEntriesMax, 0) }},
	{"staged", func(t *testing.T) { holdHash(t, nil) }},
}

func TestHostileArchivesAreRefused(t *testing.T) {
	for _, mode := range extractionModes {
		for _, tc := range hostileCases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				mode.setup(t)
				target, sibling := sandbox(t)
				before := snapshot(t, filepath.Dir(target))
				data := buildTar(t, sibling, tc.entries)
				p := filepath.Join(t.TempDir(), "hostile.tar")
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
				_, err := Restore(context.Background(), RestoreOptions{Archive: p, Target: target, SHA256: sha256Hex(data)})
				wantReason(t, err, UnsafeArchive)
				assertOutsideUntouched(t, before, snapshot(t, filepath.Dir(target)))
			})
		}
	}
}

// assertOutsideUntouched compares snapshots of the target's parent, ignoring
// the target's contents and its own mtime.
func assertOutsideUntouched(t testing.TB, before, after map[string]entryInfo) {
	t.Helper()
	for rel, b := range before {
		if rel == "." || rel == "target" {
			continue
		}
		if a, ok := after[rel]; !ok || a != b {
			t.Errorf("%s outside the target changed or disappeared", rel)
		}
	}
	for rel := range after {
		if _, ok := before[rel]; !ok && rel != "target" && !strings.HasPrefix(rel, "target/") {
			t.Errorf("%s was created outside the target", rel)
		}
	}
}

// TestSymlinkReplacedByFile checks that writing a file where the archive made
// a symlink replaces the link instead of writing through it.
func TestSymlinkReplacedByFile(t *testing.T) {
	for _, mode := range extractionModes {
		t.Run(mode.name, func(t *testing.T) {
			mode.setup(t)
			target, sibling := sandbox(t)
			before := snapshot(t, filepath.Dir(target))
			data := buildTar(t, sibling, []entry{
				{name: "f", typ: tar.TypeSymlink, link: "OUTSIDE/secret"},
				{name: "f", typ: tar.TypeReg, body: "replaced"},
				{name: "g", typ: tar.TypeSymlink, link: "../sibling/secret"},
				{name: "g", typ: tar.TypeLink, link: "f"},
			})
			p := filepath.Join(t.TempDir(), "a.tar")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Restore(context.Background(), RestoreOptions{Archive: p, Target: target, SHA256: sha256Hex(data)}); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(target, "g")); string(b) != "replaced" {
				t.Errorf("g holds %q", b)
			}
			assertOutsideUntouched(t, before, snapshot(t, filepath.Dir(target)))
		})
	}
}

// TestMergeThroughExistingSymlink covers a target that already holds a
// symlink to the outside: merge must not follow it.
func TestMergeThroughExistingSymlink(t *testing.T) {
	target, sibling := sandbox(t)
	if err := os.Symlink(sibling, filepath.Join(target, "pre")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../sibling", filepath.Join(target, "pre-rel")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, filepath.Dir(target))
	for _, name := range []string{"pre/pwned", "pre-rel/pwned", "pre/secret"} {
		data := buildTar(t, sibling, []entry{{name: name, typ: tar.TypeReg, body: "x"}})
		p := filepath.Join(t.TempDir(), "a.tar")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Restore(context.Background(), RestoreOptions{Archive: p, Target: target, SHA256: sha256Hex(data), Overwrite: OverwriteMerge})
		wantReason(t, err, UnsafeArchive)
	}
	assertOutsideUntouched(t, before, snapshot(t, filepath.Dir(target)))
}

// FuzzRestore feeds arbitrary tar streams to the extractor: whatever the
// input, it must not panic and nothing outside the target may change.
//
//	go test ./pkg/archive -run '^$' -fuzz '^FuzzRestore$' -fuzztime 20s -fuzzminimizetime 5s
func FuzzRestore(f *testing.F) {
	const outside = "/tmp/fuzz-outside-placeholder"
	for _, tc := range hostileCases {
		f.Add(buildTar(f, outside, tc.entries))
	}
	f.Add(buildTar(f, outside, []entry{
		{name: "dir/", typ: tar.TypeDir},
		{name: "dir/file", typ: tar.TypeReg, body: "content"},
		{name: "dir/link", typ: tar.TypeSymlink, link: "file"},
		{name: "hard", typ: tar.TypeLink, link: "dir/file"},
		{name: "dir/../x", typ: tar.TypeReg, body: "y"},
	}))
	// One sandbox per fuzzing process, a fresh target per input: creating
	// and deleting whole trees per input would dominate the run time.
	parent, sibling, before := fuzzSandbox(f)
	// Each input is extracted directly, then staged until its end (stage.go).
	var verdict chan hashResult
	testHookVerify = func(int) { verdict <- hashResult{sum: "verified"} }
	f.Cleanup(func() { testHookVerify = func(int) {} })
	f.Fuzz(func(t *testing.T, data []byte) {
		// Seeds name a fixed outside path; point them at the sibling.
		data = bytes.ReplaceAll(data, []byte(outside), []byte(sibling))
		for _, staged := range []bool{false, true} {
			target, err := os.MkdirTemp(parent, "target")
			if err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(target)
			if err != nil {
				t.Fatal(err)
			}
			x := newExtractor(root, make([]byte, 32<<10), &RestoreStats{})
			if staged {
				verdict = make(chan hashResult, 1)
				x.verify = &verification{hashed: verdict, want: "verified", prepare: func() error { return nil }}
				x.verify.startStaging(root)
			}
			if err := x.run(context.Background(), tar.NewReader(bytes.NewReader(data))); err == nil {
				_ = x.finish()
			}
			root.Close()
			// Escapes land beside the target or in the sibling, the only
			// outside paths the inputs can name.
			for _, n := range listDir(t, parent) {
				if n != "sibling" && n != filepath.Base(target) {
					t.Fatalf("%s was created outside the target", n)
				}
			}
			assertSame(t, before, snapshot(t, sibling))
			removeTree(target)
			if t.Failed() {
				t.FailNow()
			}
		}
	})
}

// fuzzSandbox is a fuzzing process's directory parent, where targets are made, and in it the
// directory sibling, holding a secret, that no input may change (its snapshot is before).
func fuzzSandbox(f *testing.F) (parent, sibling string, before map[string]entryInfo) {
	parent = f.TempDir()
	sibling = filepath.Join(parent, "sibling")
	if err := os.Mkdir(sibling, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sibling, "secret"), []byte("secret"), 0o600); err != nil {
		f.Fatal(err)
	}
	return parent, sibling, snapshot(f, sibling)
}

// removeTree deletes a restored tree even when it holds read-only
// directories, which an unprivileged run could not otherwise empty.
func removeTree(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}
