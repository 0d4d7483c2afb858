//go:build cuda

package main

import (
	"path/filepath"
	"slices"
	"testing"
)

// --device cuda answers exactly what the CPU answers (the GPU's float16
// ranking is refined to the exact one), on the emulator or a GPU.
func TestSearchOnGPU(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	index := filepath.Join(dir, "ix")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	wd := newWorld(7)
	_, q := wd.sample(13)
	qPath := filepath.Join(dir, "q.npy")
	writeF32(t, qPath, []int{13, tOut}, q)
	cpu, gpu := filepath.Join(dir, "cpu"), filepath.Join(dir, "gpu")
	mustRun(t, "search", "--index", index, "--queries", qPath, "--k", "9", "--out", cpu)
	mustRun(t, "search", "--index", index, "--queries", qPath, "--k", "9", "--out", gpu, "--device", "cuda")
	ci, cs, _ := readSearch(t, cpu)
	gi, gs, _ := readSearch(t, gpu)
	if !slices.Equal(ci, gi) || !slices.Equal(cs, gs) {
		t.Fatalf("GPU ids %v\nCPU ids %v", gi, ci)
	}
	wantError(t, []string{"search", "--index", index, "--queries", qPath, "--k", "49", "--out", gpu, "--device", "cuda"}, "at most 48")
}
