package retrieval_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dinoclip/dinoclip/retrieval"
)

// BenchmarkIndexAppendSmallFiles times an append of many one-row features
// files (a shard each) to a new index, closed, named by the file count and
// when the manifest is written: "every" shard (Commit after each Append, as
// the index did before 2026-12-05: quadratic in the file count, each write
// being of the whole manifest) or at "intervals" (the default, see
// minCommitInterval). It reports the time per file; the fsyncs of each
// shard's files are the linear part.
func BenchmarkIndexAppendSmallFiles(b *testing.B) {
	for _, files := range []int{1000, 8000} {
		for _, every := range []bool{true, false} {
			name := map[bool]string{true: "every", false: "intervals"}[every]
			b.Run(fmt.Sprintf("files=%d/commit=%s", files, name), func(b *testing.B) {
				for range b.N {
					w, err := retrieval.AppendIndex(filepath.Join(b.TempDir(), "ix"), testModel(8), 8, "float16")
					if err != nil {
						b.Fatal(err)
					}
					for i := range files {
						src := retrieval.IndexSource{Path: fmt.Sprintf("/features/%06d.dino.npy", i), Size: 160, Rows: 1}
						if err := w.Append(src, "", 1, func(dst []float32, lo, hi int) error {
							dst[i%8] = 1
							return nil
						}); err != nil {
							b.Fatal(err)
						}
						if every {
							if err := w.Commit(); err != nil {
								b.Fatal(err)
							}
						}
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N*files), "ms/file")
			})
		}
	}
}
