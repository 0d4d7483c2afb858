//go:build !purego

// kernel6x16AVX2 computes one 6x16 float32 tile of C = A B (AVX2 + FMA).
//
//	a: k steps of 6 values of A's panel (row index fastest)
//	b: k steps of 16 values of B's panel (column index fastest)
//	c: the tile, rows ldc floats apart; with load set the chains start
//	   from its values, else from +0
//
// Registers: Y4..Y15 hold the tile (row i in Y(4+2i), Y(5+2i)); Y0, Y1 the
// current step of B; Y2, Y3 broadcasts of A. Each element gets exactly one
// VFMADD231PS per step, in step order, which is what the package's
// determinism rests on: do not reassociate or split the chains.
//
// Before its own steps it prefetches the tile 6 rows below, the one the
// caller's loop over A's panels runs next: C is read (or, without load,
// written) once per k block, from L3 or memory, and a tile's 6 rows (12
// lines) missing at the kernel's start stalled every chain for their
// latency (measured: 3-20% of the time at the model's shapes, the most
// where k is 64 and C 8-16 MiB). Prefetches never fault, so the tile below
// the last one, past C's end, costs nothing but the hint.

#include "textflag.h"

// STEP does one step p: acc(i, j) = fma(a[i], b[j], acc(i, j)) for the
// 6x16 tile, then advances SI by 6 floats and DI by 16.
#define STEP \
	VMOVUPS      (DI), Y0          \
	VMOVUPS      32(DI), Y1        \
	VBROADCASTSS (SI), Y2          \
	VFMADD231PS  Y0, Y2, Y4        \
	VFMADD231PS  Y1, Y2, Y5        \
	VBROADCASTSS 4(SI), Y3         \
	VFMADD231PS  Y0, Y3, Y6        \
	VFMADD231PS  Y1, Y3, Y7        \
	VBROADCASTSS 8(SI), Y2         \
	VFMADD231PS  Y0, Y2, Y8        \
	VFMADD231PS  Y1, Y2, Y9        \
	VBROADCASTSS 12(SI), Y3        \
	VFMADD231PS  Y0, Y3, Y10       \
	VFMADD231PS  Y1, Y3, Y11       \
	VBROADCASTSS 16(SI), Y2        \
	VFMADD231PS  Y0, Y2, Y12       \
	VFMADD231PS  Y1, Y2, Y13       \
	VBROADCASTSS 20(SI), Y3        \
	VFMADD231PS  Y0, Y3, Y14       \
	VFMADD231PS  Y1, Y3, Y15       \
	ADDQ         $24, SI           \
	ADDQ         $64, DI

// func kernel6x16AVX2(k int, a, b, c *float32, ldc int, load bool)
TEXT ·kernel6x16AVX2(SB), NOSPLIT, $0-41
	MOVQ    k+0(FP), CX
	MOVQ    a+8(FP), SI
	MOVQ    b+16(FP), DI
	MOVQ    c+24(FP), DX
	MOVQ    ldc+32(FP), R8
	SHLQ    $2, R8             // bytes between rows of C
	LEAQ    (R8)(R8*2), R10    // 3 rows
	LEAQ    (DX)(R10*2), R11   // the next tile, 6 rows down
	PREFETCHT0 (R11)           // each row's 64 bytes may span two lines
	PREFETCHT0 60(R11)
	PREFETCHT0 (R11)(R8*1)
	PREFETCHT0 60(R11)(R8*1)
	PREFETCHT0 (R11)(R8*2)
	PREFETCHT0 60(R11)(R8*2)
	PREFETCHT0 (R11)(R10*1)
	PREFETCHT0 60(R11)(R10*1)
	LEAQ    (R11)(R8*4), R11
	PREFETCHT0 (R11)
	PREFETCHT0 60(R11)
	PREFETCHT0 (R11)(R8*1)
	PREFETCHT0 60(R11)(R8*1)
	MOVBQZX load+40(FP), AX
	TESTQ   AX, AX
	JZ      zero

	MOVQ    DX, R9
	VMOVUPS (R9), Y4
	VMOVUPS 32(R9), Y5
	ADDQ    R8, R9
	VMOVUPS (R9), Y6
	VMOVUPS 32(R9), Y7
	ADDQ    R8, R9
	VMOVUPS (R9), Y8
	VMOVUPS 32(R9), Y9
	ADDQ    R8, R9
	VMOVUPS (R9), Y10
	VMOVUPS 32(R9), Y11
	ADDQ    R8, R9
	VMOVUPS (R9), Y12
	VMOVUPS 32(R9), Y13
	ADDQ    R8, R9
	VMOVUPS (R9), Y14
	VMOVUPS 32(R9), Y15
	JMP     steps

zero:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

steps:
	// Four steps per iteration while at least four remain, then one.
	CMPQ CX, $4
	JLT  tail

loop4:
	STEP
	STEP
	STEP
	STEP
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JZ    store

loop1:
	STEP
	DECQ CX
	JNZ  loop1

store:
	VMOVUPS Y4, (DX)
	VMOVUPS Y5, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y6, (DX)
	VMOVUPS Y7, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y8, (DX)
	VMOVUPS Y9, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y10, (DX)
	VMOVUPS Y11, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y12, (DX)
	VMOVUPS Y13, 32(DX)
	ADDQ    R8, DX
	VMOVUPS Y14, (DX)
	VMOVUPS Y15, 32(DX)
	VZEROUPPER
	RET
