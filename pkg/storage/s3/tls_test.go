package s3

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"platform.example.com/backup-operator/pkg/archive"
)

// writeCerts writes a CA, and a certificate for 127.0.0.1 that it signed with its key, as PEM
// files in dir.
func writeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey, srvKey := newKey(), newKey()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", srvDER), write("key.pem", "PRIVATE KEY", keyDER)
}

func TestTLS(t *testing.T) {
	bin := versitygw(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCerts(t, dir)
	srv, err := startServer(t, bin, dir, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	ctx := context.Background()

	cfg := srv.config("tls-bucket")
	_, err = newBackend(t, cfg).Check(ctx, "")
	e := wantReason(t, err, archive.StorageTLSUntrusted)
	t.Log(e)

	cfg.CAFile = caFile
	b := newBackend(t, cfg)
	if err := b.core.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: testRegion}); err != nil {
		t.Fatal(err)
	}
	if res, err := b.Check(ctx, ""); err != nil || !res.Writable {
		t.Fatalf("Check with the CA bundle: %+v, %v", res, err)
	}

	cfg.CAFile, cfg.InsecureSkipTLSVerify = "", true
	if _, err := newBackend(t, cfg).Check(ctx, ""); err != nil {
		t.Fatalf("Check without verification: %v", err)
	}

	cfg.InsecureSkipTLSVerify, cfg.CAFile = false, certFile+".missing"
	_, err = New(ctx, cfg)
	wantReason(t, err, archive.InvalidArgument)
}
