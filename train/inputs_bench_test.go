package train

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkInputIdentity compares the cost of FileID's sampled hash with
// a full SHA-256 of a 256 MiB training file (page cache warm: the cost of
// the hashing itself; a cold disk adds the read of every byte to the full
// hash, of 512 KiB to the sample). The numbers are per file; bytes/s is
// of the file's size.
func BenchmarkInputIdentity(b *testing.B) {
	path := filepath.Join(b.TempDir(), "shard.dino.npy")
	buf := make([]byte, 256<<20)
	for i := range buf {
		buf[i] = byte(i * 131)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("sampled", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if _, err := fileID(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
