//go:build !cgo

package archive

// Backups compress with the reference zstd library through cgo (see
// zstdenc.go). Without cgo the build stops here, on purpose: build with
// CGO_ENABLED=1, gcc and libzstd-dev, as `make build` does.
var _ = backupAgentNeedsCgoAndLibzstd
