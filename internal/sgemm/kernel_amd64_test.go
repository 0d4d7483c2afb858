//go:build !purego

package sgemm

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// TestKernelsOnThisCPU checks that kernels() lists every assembly kernel
// this CPU runs, the AVX-512 one first, so that the tests that compare
// each of kernels() with the reference (TestBitIdentical, TestGOMAXPROCS,
// TestPacked) do check it wherever it can run, and that Gemm uses the
// first.
func TestKernelsOnThisCPU(t *testing.T) {
	var want []*kernel
	if cpu.X86.HasAVX512F {
		want = append(want, avx512)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		want = append(want, avx2)
	}
	got := kernels()
	var names []string
	for _, k := range got {
		names = append(names, k.name)
	}
	t.Logf("kernels on this CPU: %v (AVX-512F %v, AVX2 %v, FMA %v)", names, cpu.X86.HasAVX512F, cpu.X86.HasAVX2, cpu.X86.HasFMA)
	if len(got) != len(want) {
		t.Fatalf("kernels() = %v, want %d kernels", names, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kernels() = %v, want %s at %d", names, want[i].name, i)
		}
	}
	if len(got) > 0 && Kernel() != got[0].name {
		t.Fatalf("Gemm uses %s, not the first of kernels(), %s", Kernel(), got[0].name)
	}
}
