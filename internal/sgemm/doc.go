// Package sgemm is the float32 matrix product of the CPU engine:
// C[m,n] = op(A)[m,k] op(B)[k,n], or C += that, for row-major matrices.
//
// It is a BLIS-style packed GEMM: for each block of kc steps, A is packed
// in blocks of mc x kc into panels mr rows tall, B into panels nr columns
// wide right before their use (block sizes and loop order: sgemm.go), and
// a register-blocked microkernel multiplies one A panel by one B panel
// into an mr x nr tile of C. On amd64 the microkernel is Go assembly,
// picked at run time with golang.org/x/sys/cpu from those the CPU (and
// OS) supports, fastest first (kernels in kernel_amd64.go):
//
//   - AVX-512F: an 8x32 tile in 16 of the 32 ZMM registers
//     (kernel_avx512_amd64.s); each step of k is 2 loads of B and 8
//     broadcasts of A for 16 FMAs of 16 floats. On a Zen 5 (full-width
//     512-bit FMA) it ran the model's products 1.4-2.1 times as fast as the
//     AVX2 kernel (2026-12-02, commit 1fa2b5d). On CPUs that split 512-bit operations in two (Zen 4)
//     the gain would come only from the fewer loads per FMA; it has not
//     been measured on one.
//   - AVX2 and FMA: a 6x16 tile in 12 of the 16 YMM registers
//     (kernel_amd64.s).
//
// Both pack their panels with the same assembly (pack_amd64.s: 8x8
// transposes for panels a multiple of 8 wide, and the 6-row ones of the
// AVX2 kernel). A ragged edge of C is computed as a full tile in scratch
// and copied out (block, sgemm.go), so the kernels only ever see whole
// tiles. Elsewhere, and under the purego build tag, Gemm calls gonum's
// Sgemm instead.
//
// The assembly is written by hand, not generated (with avo, say): each
// kernel is one short loop of a dozen macro lines over a fixed register
// map, which a generator would not make shorter or clearer, and the build
// stays free of a code-generation step.
//
// # Determinism
//
// Every element of C is one chain of fused multiply-adds in k order,
//
//	acc = start; for p := 0; p < k; p++ { acc = fma(A[i,p], B[p,j], acc) }
//
// with start 0, or the old C[i,j] when accumulating, each step rounded once
// to float32. Blocking over k stores acc into C as float32 and reloads it,
// which changes nothing, and threads only ever split the rows or columns of
// C, never k. So the bits of C depend neither on GOMAXPROCS, nor on the
// block sizes, nor on which microkernel ran, nor on its tile shape: each
// assembly kernel and the pure-Go reference kernel (reference.go, an
// exactly rounded float32 FMA) give the same bits, which the tests check
// for every kernel the CPU runs. The gonum fallback rounds
// differently and is not bit-compatible with the packed path.
package sgemm
