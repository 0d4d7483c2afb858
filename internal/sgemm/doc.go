// Package sgemm is the float32 matrix product of the CPU engine:
// C[m,n] = op(A)[m,k] op(B)[k,n], or C += that, for row-major matrices.
//
// It is a BLIS-style packed GEMM: for each block of kc steps, A is packed
// in blocks of mc x kc into panels mr rows tall, B into panels nr columns
// wide right before their use (block sizes and loop order: sgemm.go), and
// a register-blocked microkernel multiplies one A panel by one B panel
// into an mr x nr tile of C. On amd64 with AVX2 and FMA the microkernel is
// Go assembly (6x16, kernel_amd64.s), picked at run time with
// golang.org/x/sys/cpu. Elsewhere, and under the purego build tag, Gemm
// calls gonum's Sgemm instead.
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
// block sizes, nor on which microkernel ran: the assembly kernel and the
// pure-Go reference kernel (reference.go, an exactly rounded float32 FMA)
// give the same bits, which the tests check. The gonum fallback rounds
// differently and is not bit-compatible with the packed path.
package sgemm
