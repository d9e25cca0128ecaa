// Command image builds a container image without a container engine and writes
// it as a docker-archive tarball that `ctr images import` (and `docker load`)
// accept.
//
// The image has a single layer holding a static binary plus the minimum layout
// of a distroless "static" image: /etc/passwd and /etc/group with root and
// nonroot (65532), /home/nonroot, and /tmp with mode 1777. It runs as
// 65532:65532 by default. The tarball is reproducible: the same binary always
// gives the same image ID, which is printed on stdout so callers can stamp it
// into a pod template and roll out only real changes.
//
// With -rootfs instead of -binary, the layer holds a whole directory tree over
// that layout (its files win), for images of other programs that the node runs
// in tests and demos, such as PostgreSQL from the distribution's packages.
//
// Usage:
//
//	go run ./hack/image -binary _output/bin/backup-controller \
//	    -path /backup-controller -tag backup-operator:dev \
//	    -out _output/images/backup-operator.tar
//	go run ./hack/image -rootfs _output/images/postgres-rootfs \
//	    -tag backup-operator-postgres:dev -out _output/images/postgres.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	nonrootUID = 65532
	nonrootGID = 65532
)

// epoch is the modification time of every file in the layer and the image's
// creation time, so that the output depends only on the inputs.
var epoch = time.Unix(0, 0).UTC()

type options struct {
	binary string
	rootfs string
	path   string
	tag    string
	out    string
	user   string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "static binary to put into the image (required)")
	flag.StringVar(&o.rootfs, "rootfs", "", "directory tree to put into the image instead of -binary; -path, if given, is the entrypoint")
	flag.StringVar(&o.path, "path", "", "absolute path of the binary inside the image, also the entrypoint (required with -binary)")
	flag.StringVar(&o.tag, "tag", "", "image reference written into the tarball, e.g. backup-operator:dev (required)")
	flag.StringVar(&o.out, "out", "", "docker-archive tarball to write (required)")
	flag.StringVar(&o.user, "user", fmt.Sprintf("%d:%d", nonrootUID, nonrootGID), "user the image runs as")
	flag.Parse()
	bad := o.tag == "" || o.out == "" || (o.path != "" && o.path[0] != '/')
	if o.rootfs == "" {
		bad = bad || o.binary == "" || o.path == ""
	} else {
		bad = bad || o.binary != ""
	}
	if bad {
		fmt.Fprintln(os.Stderr, "image: -tag and -out are required, and either -binary with -path (absolute) or -rootfs")
		flag.Usage()
		os.Exit(2)
	}
	id, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(id)
}

// build writes the tarball and returns the image ID (the config digest).
func build(o options) (string, error) {
	var layerTar []byte
	var err error
	if o.rootfs != "" {
		layerTar, err = rootfsContents(o.rootfs)
	} else {
		var bin []byte
		if bin, err = os.ReadFile(o.binary); err == nil {
			layerTar, err = layerContents(o.path, bin)
		}
	}
	if err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return "", fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", fmt.Errorf("append layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = runtime.GOARCH
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = nil
	if o.path != "" {
		cfg.Config.Entrypoint = []string{o.path}
	}
	cfg.Config.Cmd = nil
	cfg.Config.User = o.user
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/nonroot"}
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.title": o.tag}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: epoch})
	if err != nil {
		return "", err
	}
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return "", fmt.Errorf("tag %q: %w", o.tag, err)
	}
	tmp := o.out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", o.out, err)
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return "", err
	}
	id, err := img.ConfigName()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// layerContents returns an uncompressed tar stream with the distroless-static
// layout plus the binary.
func layerContents(binPath string, bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeBase(tw, nil); err != nil {
		return nil, err
	}
	// Parent directories of the binary, then the binary itself.
	rel := binPath[1:]
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			switch p := rel[:i]; p {
			case "etc", "home", "home/nonroot", "root", "tmp":
			default:
				if err := writeDir(tw, p, 0o755, 0, 0); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := writeFile(tw, rel, 0o755, bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rootfsContents returns an uncompressed tar stream with the distroless-static
// layout, less what the tree replaces, plus the tree: directories, regular
// files and symbolic links with their modes, owned by root.
func rootfsContents(root string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var entries []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		entries = append(entries, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	replaced := map[string]bool{}
	for _, e := range entries {
		replaced[e] = true
	}
	if err := writeBase(tw, replaced); err != nil {
		return nil, err
	}
	for _, rel := range entries {
		path := filepath.Join(root, rel)
		fi, err := os.Lstat(path)
		if err != nil {
			return nil, err
		}
		mode := int64(fi.Mode().Perm())
		if fi.Mode()&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		switch {
		case fi.IsDir():
			if isBaseDir(rel) {
				continue
			}
			err = writeDir(tw, rel, mode, 0, 0)
		case fi.Mode()&fs.ModeSymlink != 0:
			var target string
			if target, err = os.Readlink(path); err == nil {
				err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: rel, Linkname: target, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX})
			}
		case fi.Mode().IsRegular():
			var data []byte
			if data, err = os.ReadFile(path); err == nil {
				err = writeFile(tw, rel, mode, data)
			}
		default:
			err = fmt.Errorf("%s: not a directory, regular file or symbolic link", path)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// baseDirs are the directories of the distroless-static layout.
var baseDirs = []string{"etc", "home", "home/nonroot", "root", "tmp"}

func isBaseDir(rel string) bool {
	for _, d := range baseDirs {
		if d == rel {
			return true
		}
	}
	return false
}

// writeBase writes the distroless-static layout, less the files in skip.
func writeBase(tw *tar.Writer, skip map[string]bool) error {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonrootUID, nonrootGID)
	group := fmt.Sprintf("root:x:0:\nnobody:x:65534:\nnonroot:x:%d:\n", nonrootGID)
	steps := []func() error{
		func() error { return writeDir(tw, "etc", 0o755, 0, 0) },
		func() error { return writeFile(tw, "etc/passwd", 0o644, []byte(passwd)) },
		func() error { return writeFile(tw, "etc/group", 0o644, []byte(group)) },
		func() error { return writeDir(tw, "home", 0o755, 0, 0) },
		func() error { return writeDir(tw, "home/nonroot", 0o700, nonrootUID, nonrootGID) },
		func() error { return writeDir(tw, "root", 0o700, 0, 0) },
		func() error { return writeDir(tw, "tmp", 0o1777, 0, 0) },
	}
	names := []string{"etc", "etc/passwd", "etc/group", "home", "home/nonroot", "root", "tmp"}
	for i, s := range steps {
		if skip[names[i]] && !isBaseDir(names[i]) {
			continue
		}
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

func writeDir(tw *tar.Writer, name string, mode int64, uid, gid int) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid, ModTime: epoch, Format: tar.FormatPAX})
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}
