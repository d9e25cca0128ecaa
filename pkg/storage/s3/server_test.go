package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// The tests run against versitygw, a real S3 server on the local file system.
const (
	testAccessKey = "backup-operator-test"
	testSecretKey = "backup-operator-test-secret"
	testRegion    = "us-east-1"
)

// server is a versitygw process on a loopback port.
type server struct {
	endpoint string // http(s)://127.0.0.1:port
	cmd      *exec.Cmd
	out      *bytes.Buffer
	tmp      string // removed on stop
}

var (
	sharedOnce   sync.Once
	sharedServer *server
	sharedErr    error
	bucketSeq    atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedServer != nil {
		sharedServer.stop()
	}
	os.Exit(code)
}

// versitygw finds the server binary: $VERSITYGW, the repository's _output/bin, or PATH.
func versitygw(t testing.TB) string {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				if p := filepath.Join(dir, "_output", "bin", "versitygw"); fileExists(p) {
					return p
				}
				break
			}
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	const why = "the S3 tests need versitygw, an S3 server: run `make s3-server` to build it into _output/bin, or set VERSITYGW to its path"
	if os.Getenv("CI") != "" {
		// CI builds the server before the tests: a skip there would hide the whole backend.
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// freePort returns a loopback port that nothing listens on.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts versitygw with its data in dir, serving TLS when cert and key are set.
func startServer(t testing.TB, bin, dir, cert, key string) (*server, error) {
	addr := freePort(t)
	data, versions := filepath.Join(dir, "data"), filepath.Join(dir, "versions")
	for _, d := range []string{data, versions} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	args := []string{"--port", addr, "--quiet"}
	scheme := "http"
	if cert != "" {
		args = append(args, "--cert", cert, "--key", key)
		scheme = "https"
	}
	args = append(args, "posix", "--versioning-dir", versions, data)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+testAccessKey, "ROOT_SECRET_ACCESS_KEY="+testSecretKey)
	s := &server{endpoint: scheme + "://" + addr, cmd: cmd, out: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s, nil
		}
	}
	s.stop()
	return nil, fmt.Errorf("versitygw did not listen on %s within 15s; its output:\n%s", addr, s.out)
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// shared is the server of the tests that need no server of their own.
func shared(t testing.TB) *server {
	bin := versitygw(t)
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "s3-test-")
		if err != nil {
			sharedErr = err
			return
		}
		if sharedServer, sharedErr = startServer(t, bin, dir, "", ""); sharedErr == nil {
			sharedServer.tmp = dir
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedServer
}

// config is a configuration of bucket on s.
func (s *server) config(bucket string) Config {
	return Config{
		Endpoint: s.endpoint, Region: testRegion, Bucket: bucket, ForcePathStyle: true,
		AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey,
	}
}

var nonBucket = regexp.MustCompile(`[^a-z0-9-]+`)

// newBucket creates a bucket for t on s and returns a configuration for it.
func newBucket(t testing.TB, s *server, lock bool) Config {
	name := strings.Trim(nonBucket.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = fmt.Sprintf("%.40s-%d", name, bucketSeq.Add(1))
	cfg := s.config(name)
	b := newBackend(t, cfg)
	if err := b.core.MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: testRegion, ObjectLocking: lock}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return cfg
}

func newBackend(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proxy forwards requests to an S3 server and records them ("METHOD PATH?QUERY sse=… lock=…").
// It answers AccessDenied to the requests that fail selects, and cuts the answers to those that
// cut selects after 1 MiB. It answers the first lose aborts of multipart uploads as done without
// passing them on.
type proxy struct {
	*httptest.Server
	mu   sync.Mutex
	log  []string
	fail func(r *http.Request) bool
	cut  func(r *http.Request) bool
	lose int
}

// newProxy starts a proxy to s; cfg is then pointed at it.
func newProxy(t testing.TB, s *server, cfg *Config) *proxy {
	target, err := url.Parse(s.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target) // keeps the Host header, which is signed
	rp.ErrorLog = log.New(io.Discard, "", 0)         // requests the client abandons are expected
	none := func(*http.Request) bool { return false }
	p := &proxy{fail: none, cut: none}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.log = append(p.log, fmt.Sprintf("%s %s?%s sse=%s lock=%s", r.Method, r.URL.Path, r.URL.RawQuery,
			r.Header.Get("X-Amz-Server-Side-Encryption"), r.Header.Get("X-Amz-Object-Lock-Mode")))
		fail, cut := p.fail(r), p.cut(r)
		lost := p.lose > 0 && r.Method == http.MethodDelete && r.URL.Query().Has("uploadId")
		if lost {
			p.lose--
		}
		p.mu.Unlock()
		if lost {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if fail {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>denied by the test</Message></Error>`)
			return
		}
		if cut {
			w = &cutWriter{ResponseWriter: w, left: 1 << 20}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	cfg.Endpoint = p.URL
	return p
}

// loseAborts makes the proxy answer the next n aborts without passing them on.
func (p *proxy) loseAborts(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lose = n
}

// set makes the proxy fail and cut the requests that fail and cut select.
func (p *proxy) set(fail, cut func(r *http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail, p.cut = fail, cut
}

// cutWriter drops the connection after left bytes of the body.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (w *cutWriter) Write(b []byte) (int, error) {
	if len(b) < w.left {
		w.left -= len(b)
		return w.ResponseWriter.Write(b)
	}
	w.ResponseWriter.Write(b[:w.left])
	w.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// count is the number of requests in the log matching re.
func (p *proxy) count(re string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.log {
		if regexp.MustCompile(re).MatchString(l) {
			n++
		}
	}
	return n
}

// index is the position in the log of the first request matching re, or -1.
func (p *proxy) index(re string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, l := range p.log {
		if regexp.MustCompile(re).MatchString(l) {
			return i
		}
	}
	return -1
}
