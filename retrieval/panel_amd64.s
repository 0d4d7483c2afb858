//go:build !purego

// The AVX2 + FMA (+ F16C) kernels of the CPU search (panel.go explains
// the layouts): packing 16 key rows into a key panel, decoding float16 on
// the way, their squared norms, and the 6×16 score tiles of a query panel
// against the key panels of a tile with the threshold test.

#include "textflag.h"

// TRANSPOSE8 transposes the 8×8 block in Y0..Y7 (row r in Yr) into
// Y8..Y15 (column r of the input in Y(8+r)).
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8          \
	VUNPCKHPS  Y1, Y0, Y9          \
	VUNPCKLPS  Y3, Y2, Y10         \
	VUNPCKHPS  Y3, Y2, Y11         \
	VUNPCKLPS  Y5, Y4, Y12         \
	VUNPCKHPS  Y5, Y4, Y13         \
	VUNPCKLPS  Y7, Y6, Y14         \
	VUNPCKHPS  Y7, Y6, Y15         \
	VSHUFPS    $0x44, Y10, Y8, Y0  \
	VSHUFPS    $0xEE, Y10, Y8, Y1  \
	VSHUFPS    $0x44, Y11, Y9, Y2  \
	VSHUFPS    $0xEE, Y11, Y9, Y3  \
	VSHUFPS    $0x44, Y14, Y12, Y4 \
	VSHUFPS    $0xEE, Y14, Y12, Y5 \
	VSHUFPS    $0x44, Y15, Y13, Y6 \
	VSHUFPS    $0xEE, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8   \
	VPERM2F128 $0x20, Y5, Y1, Y9   \
	VPERM2F128 $0x20, Y6, Y2, Y10  \
	VPERM2F128 $0x20, Y7, Y3, Y11  \
	VPERM2F128 $0x31, Y4, Y0, Y12  \
	VPERM2F128 $0x31, Y5, Y1, Y13  \
	VPERM2F128 $0x31, Y6, Y2, Y14  \
	VPERM2F128 $0x31, Y7, Y3, Y15

// STORE8 stores Y8..Y15 at DI+off, 64 bytes (one step of a panel) apart.
#define STORE8(off) \
	VMOVUPS Y8, off(DI)      \
	VMOVUPS Y9, off+64(DI)   \
	VMOVUPS Y10, off+128(DI) \
	VMOVUPS Y11, off+192(DI) \
	VMOVUPS Y12, off+256(DI) \
	VMOVUPS Y13, off+320(DI) \
	VMOVUPS Y14, off+384(DI) \
	VMOVUPS Y15, off+448(DI)

// LOADF16 loads 8 float16 values from each of the 8 rows at R11 (R8 bytes
// apart, R10 = 3·R8) as float32 into Y0..Y7.
#define LOADF16 \
	VCVTPH2PS (R11), Y0        \
	VCVTPH2PS (R11)(R8*1), Y1  \
	VCVTPH2PS (R11)(R8*2), Y2  \
	VCVTPH2PS (R11)(R10*1), Y3 \
	LEAQ      (R11)(R8*4), R12 \
	VCVTPH2PS (R12), Y4        \
	VCVTPH2PS (R12)(R8*1), Y5  \
	VCVTPH2PS (R12)(R8*2), Y6  \
	VCVTPH2PS (R12)(R10*1), Y7

// LOADF32 is LOADF16 for float32 rows.
#define LOADF32 \
	VMOVUPS (R11), Y0        \
	VMOVUPS (R11)(R8*1), Y1  \
	VMOVUPS (R11)(R8*2), Y2  \
	VMOVUPS (R11)(R10*1), Y3 \
	LEAQ    (R11)(R8*4), R12 \
	VMOVUPS (R12), Y4        \
	VMOVUPS (R12)(R8*1), Y5  \
	VMOVUPS (R12)(R8*2), Y6  \
	VMOVUPS (R12)(R10*1), Y7

// PACK is the body of packF16/packF32: 16 rows, 8 columns per iteration
// (the first 8 rows to steps' lanes 0-7, the next 8 to lanes 8-15); the
// source advances by 8 values of SIZE bytes.
#define PACK(LOAD, SIZE) \
	MOVQ  k8+0(FP), CX        \
	MOVQ  src+8(FP), SI       \
	MOVQ  lds+16(FP), R8      \
	MOVQ  dst+24(FP), DI      \
	LEAQ  (R8)(R8*2), R10     \
	MOVQ  R8, R9              \
	SHLQ  $3, R9              \
	TESTQ CX, CX              \
	JZ    done                \
loop:                         \
	MOVQ  SI, R11             \
	LOAD                      \
	TRANSPOSE8                \
	STORE8(0)                 \
	LEAQ  (SI)(R9*1), R11     \
	LOAD                      \
	TRANSPOSE8                \
	STORE8(32)                \
	ADDQ  $(8*SIZE), SI       \
	ADDQ  $512, DI            \
	DECQ  CX                  \
	JNZ   loop                \
done:                         \
	VZEROUPPER                \
	RET

// func packF16(k8 int, src *byte, lds int, dst *float32)
//
// dst[q*16+j] = float32(src row j, value q) for j < 16 and q < 8·k8: the
// 16 float16 rows at src (lds bytes apart) as a key panel.
TEXT ·packF16(SB), NOSPLIT, $0-32
	PACK(LOADF16, 2)

// func packF32(k8 int, src *byte, lds int, dst *float32)
//
// packF16 for float32 rows.
TEXT ·packF32(SB), NOSPLIT, $0-32
	PACK(LOADF32, 4)

// func panelNorms(k int, panel *float32, out *[16]float64)
//
// out[j] = Σ_q float64(panel[q*16+j])², k > 0 steps, in float64 (each
// square is exact), four 4-lane accumulators.
TEXT ·panelNorms(SB), NOSPLIT, $0-24
	MOVQ   k+0(FP), CX
	MOVQ   panel+8(FP), SI
	MOVQ   out+16(FP), DI
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7

norms:
	VCVTPS2PD   (SI), Y0
	VCVTPS2PD   16(SI), Y1
	VCVTPS2PD   32(SI), Y2
	VCVTPS2PD   48(SI), Y3
	VFMADD231PD Y0, Y0, Y4
	VFMADD231PD Y1, Y1, Y5
	VFMADD231PD Y2, Y2, Y6
	VFMADD231PD Y3, Y3, Y7
	ADDQ        $64, SI
	DECQ        CX
	JNZ         norms

	VMOVUPD Y4, (DI)
	VMOVUPD Y5, 32(DI)
	VMOVUPD Y6, 64(DI)
	VMOVUPD Y7, 96(DI)
	VZEROUPPER
	RET

// STEP does one step of the 6×16 tile: acc(i, j) += q[i]·key[j] (one FMA
// each), the query panel at R13 (6 values a step), the key panel at DI
// (16 values a step); Y0, Y1 hold the keys, Y2, Y3 the broadcasts.
#define STEP \
	VMOVUPS      (DI), Y0    \
	VMOVUPS      32(DI), Y1  \
	VBROADCASTSS (R13), Y2   \
	VFMADD231PS  Y0, Y2, Y4  \
	VFMADD231PS  Y1, Y2, Y5  \
	VBROADCASTSS 4(R13), Y3  \
	VFMADD231PS  Y0, Y3, Y6  \
	VFMADD231PS  Y1, Y3, Y7  \
	VBROADCASTSS 8(R13), Y2  \
	VFMADD231PS  Y0, Y2, Y8  \
	VFMADD231PS  Y1, Y2, Y9  \
	VBROADCASTSS 12(R13), Y3 \
	VFMADD231PS  Y0, Y3, Y10 \
	VFMADD231PS  Y1, Y3, Y11 \
	VBROADCASTSS 16(R13), Y2 \
	VFMADD231PS  Y0, Y2, Y12 \
	VFMADD231PS  Y1, Y2, Y13 \
	VBROADCASTSS 20(R13), Y3 \
	VFMADD231PS  Y0, Y3, Y14 \
	VFMADD231PS  Y1, Y3, Y15 \
	ADDQ         $24, R13    \
	ADDQ         $64, DI

// PASS ORs into Y3 the lanes of row i's accumulators (YA, YB) that are
// not below its threshold thr[i] (at R10+OFF), or are -Inf (Y2 holds -Inf
// in every lane): NLT_UQ (0x15), so a NaN score passes too. NaN and -Inf
// are sums that overflowed float32 (no error bound holds for them), which
// the exact test must see.
#define PASS(OFF, YA, YB) \
	VBROADCASTSS OFF(R10), Y0      \
	VCMPPS       $0x15, Y0, YA, Y1 \
	VORPS        Y1, Y3, Y3        \
	VCMPPS       $0x15, Y0, YB, Y1 \
	VORPS        Y1, Y3, Y3        \
	VCMPPS       $0x00, Y2, YA, Y1 \
	VORPS        Y1, Y3, Y3        \
	VCMPPS       $0x00, Y2, YB, Y1 \
	VORPS        Y1, Y3, Y3

DATA negInf<>+0(SB)/4, $0xff800000
GLOBL negInf<>(SB), RODATA|NOPTR, $4

// func scorePanels(k int, q *float32, keys *float32, panels int, thr *[6]float32, c *float32, ldc int) uint64
//
// For each key panel p < panels (k steps of 16 values each, one after the
// other from keys) the 6×16 tile of float32 dot products with the query
// panel q (k steps of 6 values): c[i*ldc + 16p + j] = Σ_q q[6q+i]·key[16q+j]
// as one FMA chain in step order. Bit p of the result is set when some
// score of tile p in row i is not below thr[i], or is NaN or -Inf.
TEXT ·scorePanels(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ q+8(FP), SI
	MOVQ keys+16(FP), DI
	MOVQ panels+24(FP), BX
	MOVQ thr+32(FP), R10
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R8
	SHLQ $2, R8              // bytes between rows of c
	XORQ R11, R11            // the mask
	XORQ R12, R12            // the panel

panel:
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
	MOVQ   SI, R13
	MOVQ   CX, R14
	CMPQ   R14, $4
	JLT    tail

loop4:
	STEP
	STEP
	STEP
	STEP
	SUBQ $4, R14
	CMPQ R14, $4
	JGE  loop4

tail:
	TESTQ R14, R14
	JZ    store

loop1:
	STEP
	DECQ R14
	JNZ  loop1

store:
	MOVQ    DX, R9
	VMOVUPS Y4, (R9)
	VMOVUPS Y5, 32(R9)
	ADDQ    R8, R9
	VMOVUPS Y6, (R9)
	VMOVUPS Y7, 32(R9)
	ADDQ    R8, R9
	VMOVUPS Y8, (R9)
	VMOVUPS Y9, 32(R9)
	ADDQ    R8, R9
	VMOVUPS Y10, (R9)
	VMOVUPS Y11, 32(R9)
	ADDQ    R8, R9
	VMOVUPS Y12, (R9)
	VMOVUPS Y13, 32(R9)
	ADDQ    R8, R9
	VMOVUPS Y14, (R9)
	VMOVUPS Y15, 32(R9)

	VXORPS       Y3, Y3, Y3
	VBROADCASTSS negInf<>(SB), Y2
	PASS(0, Y4, Y5)
	PASS(4, Y6, Y7)
	PASS(8, Y8, Y9)
	PASS(12, Y10, Y11)
	PASS(16, Y12, Y13)
	PASS(20, Y14, Y15)
	VMOVMSKPS Y3, AX
	TESTL     AX, AX
	JZ        next
	BTSQ      R12, R11

next:
	ADDQ $64, DX
	INCQ R12
	CMPQ R12, BX
	JLT  panel

	MOVQ R11, ret+56(FP)
	VZEROUPPER
	RET
