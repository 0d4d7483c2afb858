//go:build !cuda

package main

import (
	"path/filepath"
	"testing"
)

// Without the cuda build tag, --device cuda says how to get it.
func TestSearchWithoutCUDA(t *testing.T) {
	dir := t.TempDir()
	keys, q := filepath.Join(dir, "k.npy"), filepath.Join(dir, "q.npy")
	writeF32(t, keys, []int{2, 2}, []float32{1, 0, 0, 1})
	writeF32(t, q, []int{1, 2}, []float32{1, 1})
	wantError(t, []string{"search", "--index", keys, "--queries", q, "--out", filepath.Join(dir, "o"), "--device", "cuda"}, "without CUDA", "-tags cuda")
}
