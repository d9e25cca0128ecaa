// Package archive implements the operator's archive format: a PAX tar stream,
// compressed with zstd, gzip or nothing, written atomically next to a sha256
// checksum file and a JSON manifest, and extracted without ever touching a path
// outside the restore target.
//
// Everything streams with a fixed set of buffers, so memory use does not grow
// with the size of the volume; it grows only with the number of entries in the
// largest directory, the number of hard-linked files and, on restore, the
// number of directories (whose metadata is applied after their contents).
package archive
