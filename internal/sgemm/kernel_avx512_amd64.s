//go:build !purego

// kernel8x32AVX512 computes one 8x32 float32 tile of C = A B (AVX-512F).
//
//	a: k steps of 8 values of A's panel (row index fastest)
//	b: k steps of 32 values of B's panel (column index fastest)
//	c: the tile, rows ldc floats apart; with load set the chains start
//	   from its values, else from +0
//
// Registers: Z16..Z31 hold the tile (row i in Z(16+2i), Z(17+2i)); Z0, Z1
// the current step of B; Z2, Z3 broadcasts of A. Each element gets exactly
// one VFMADD231PS per step, in step order, as in the AVX2 kernel
// (kernel_amd64.s): the package's determinism rests on it, so do not
// reassociate or split the chains.
//
// The tile is twice as wide as the AVX2 kernel's and its rows are twice as
// wide in floats, so a step's 16 FMAs need 2 loads of B and 8 broadcasts
// of A (the AVX2 kernel: 12 FMAs of half the width for 2 and 6). It
// prefetches the tile 8 rows below before its steps, for the reason the
// AVX2 kernel does: C's rows missing at the start stall every chain.

#include "textflag.h"

// ROW does row i of one step: broadcast a[i] (at off(SI)) into bc and
// fold it times the step of B into the row's two accumulators.
#define ROW(off, bc, lo, hi) \
	VBROADCASTSS off(SI), bc \
	VFMADD231PS  Z0, bc, lo  \
	VFMADD231PS  Z1, bc, hi

// STEP does one step p for the whole tile, then advances SI by 8 floats
// and DI by 32.
#define STEP \
	VMOVUPS (DI), Z0          \
	VMOVUPS 64(DI), Z1        \
	ROW(0, Z2, Z16, Z17)      \
	ROW(4, Z3, Z18, Z19)      \
	ROW(8, Z2, Z20, Z21)      \
	ROW(12, Z3, Z22, Z23)     \
	ROW(16, Z2, Z24, Z25)     \
	ROW(20, Z3, Z26, Z27)     \
	ROW(24, Z2, Z28, Z29)     \
	ROW(28, Z3, Z30, Z31)     \
	ADDQ    $32, SI           \
	ADDQ    $128, DI

// PREFETCH_ROW prefetches the 128 bytes of a row of C at R11 (three
// lines when the row is not 64-byte aligned) and moves R11 a row down.
#define PREFETCH_ROW \
	PREFETCHT0 (R11)    \
	PREFETCHT0 64(R11)  \
	PREFETCHT0 124(R11) \
	ADDQ       R8, R11

// LOAD_ROW loads the row of C at R9 into lo, hi and moves R9 a row down.
#define LOAD_ROW(lo, hi) \
	VMOVUPS (R9), lo   \
	VMOVUPS 64(R9), hi \
	ADDQ    R8, R9

// STORE_ROW stores lo, hi into the row of C at DX and moves DX a row down.
#define STORE_ROW(lo, hi) \
	VMOVUPS lo, (DX)   \
	VMOVUPS hi, 64(DX) \
	ADDQ    R8, DX

// func kernel8x32AVX512(k int, a, b, c *float32, ldc int, load bool)
TEXT ·kernel8x32AVX512(SB), NOSPLIT, $0-41
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8               // bytes between rows of C
	LEAQ (DX)(R8*8), R11      // the next tile, 8 rows down
	PREFETCH_ROW
	PREFETCH_ROW
	PREFETCH_ROW
	PREFETCH_ROW
	PREFETCH_ROW
	PREFETCH_ROW
	PREFETCH_ROW
	PREFETCH_ROW
	MOVBQZX load+40(FP), AX
	TESTQ   AX, AX
	JZ      zero

	MOVQ DX, R9
	LOAD_ROW(Z16, Z17)
	LOAD_ROW(Z18, Z19)
	LOAD_ROW(Z20, Z21)
	LOAD_ROW(Z22, Z23)
	LOAD_ROW(Z24, Z25)
	LOAD_ROW(Z26, Z27)
	LOAD_ROW(Z28, Z29)
	LOAD_ROW(Z30, Z31)
	JMP  steps

zero:
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31

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
	STORE_ROW(Z16, Z17)
	STORE_ROW(Z18, Z19)
	STORE_ROW(Z20, Z21)
	STORE_ROW(Z22, Z23)
	STORE_ROW(Z24, Z25)
	STORE_ROW(Z26, Z27)
	STORE_ROW(Z28, Z29)
	STORE_ROW(Z30, Z31)
	VZEROUPPER
	RET
