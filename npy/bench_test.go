package npy

import (
	"path/filepath"
	"testing"
)

// BenchmarkReadRows measures conversion of one training batch (8192 rows
// of 768 features) from the mapped file, per dtype.
func BenchmarkReadRows(b *testing.B) {
	const rows, cols = 8192, 768
	data := make([]float32, rows*cols)
	for i := range data {
		data[i] = float32(i%1000) / 7
	}
	dir := b.TempDir()
	for _, c := range []struct {
		name  string
		write func(string) error
	}{
		{"f2", func(p string) error { return WriteFloat16(p, []int{rows, cols}, data) }},
		{"f4", func(p string) error { return WriteFloat32(p, []int{rows, cols}, data) }},
	} {
		p := filepath.Join(dir, c.name+".npy")
		if err := c.write(p); err != nil {
			b.Fatal(err)
		}
		a, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		dst := make([]float32, rows*cols)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(dst) * 4))
			for b.Loop() {
				if err := a.ReadRows(dst, 0, rows); err != nil {
					b.Fatal(err)
				}
			}
		})
		a.Close()
	}
}
