package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestRootfsContentsKeepsTheTreeOverTheBaseLayout(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("postgres:x:101:104::/:/bin/sh\n"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/bin/sh"), []byte("#!"), 0o755))
	must(os.Symlink("usr/bin", filepath.Join(root, "bin")))

	layer, err := rootfsContents(root)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		typ  byte
		mode int64
		body string
		link string
	}
	got := map[string][]entry{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = append(got[h.Name], entry{h.Typeflag, h.Mode, string(body), h.Linkname})
	}
	for name, es := range got {
		if len(es) != 1 {
			t.Errorf("%s is in the layer %d times", name, len(es))
		}
	}
	if e := got["etc/passwd"]; len(e) == 0 || e[0].body != "postgres:x:101:104::/:/bin/sh\n" {
		t.Errorf("etc/passwd = %+v, want the tree's", e)
	}
	if e := got["etc/group"]; len(e) == 0 {
		t.Errorf("the base layout's etc/group is missing")
	}
	if e := got["usr/bin/sh"]; len(e) == 0 || e[0].mode != 0o755 || e[0].typ != tar.TypeReg {
		t.Errorf("usr/bin/sh = %+v, want an executable file", e)
	}
	if e := got["bin"]; len(e) == 0 || e[0].typ != tar.TypeSymlink || e[0].link != "usr/bin" {
		t.Errorf("bin = %+v, want a link to usr/bin", e)
	}
	if e := got["tmp/"]; len(e) == 0 || e[0].mode != 0o1777 {
		t.Errorf("tmp/ = %+v, want mode 1777", e)
	}
}
