//go:build !purego

// transpose16x8 packs 16 rows of a row-major matrix into a B panel:
//
//	dst[q*16 + j] = src[j*lds + q]   for j < 16, q < 8*k8
//
// eight columns at a time, as two 8x8 transposes (AVX). It is the packing
// of B = W^T in the forward product, where a scalar gather cost as much as
// the multiplication at small batches.

#include "textflag.h"

// LOAD8 loads rows 0..7 (8 floats each) from R11 (row stride R8 bytes,
// R10 = 3*R8) into Y0..Y7.
#define LOAD8 \
	VMOVUPS (R11), Y0        \
	VMOVUPS (R11)(R8*1), Y1  \
	VMOVUPS (R11)(R8*2), Y2  \
	VMOVUPS (R11)(R10*1), Y3 \
	LEAQ    (R11)(R8*4), R12 \
	VMOVUPS (R12), Y4        \
	VMOVUPS (R12)(R8*1), Y5  \
	VMOVUPS (R12)(R8*2), Y6  \
	VMOVUPS (R12)(R10*1), Y7

// TRANSPOSE8 transposes the 8x8 block in Y0..Y7 into Y0..Y7 (row r of the
// result, column r of the input, in Yr), using Y8..Y15.
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

// STORE8 stores the transposed rows (Y8..Y15) at DI+off, 64 bytes apart.
#define STORE8(off) \
	VMOVUPS Y8, off(DI)      \
	VMOVUPS Y9, off+64(DI)   \
	VMOVUPS Y10, off+128(DI) \
	VMOVUPS Y11, off+192(DI) \
	VMOVUPS Y12, off+256(DI) \
	VMOVUPS Y13, off+320(DI) \
	VMOVUPS Y14, off+384(DI) \
	VMOVUPS Y15, off+448(DI)

// func transpose16x8(k8 int, src *float32, lds int, dst *float32)
TEXT ·transpose16x8(SB), NOSPLIT, $0-32
	MOVQ k8+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8               // bytes between rows
	LEAQ (R8)(R8*2), R10      // 3 rows
	MOVQ R8, R9
	SHLQ $3, R9               // 8 rows
	TESTQ CX, CX
	JZ    done

loop:
	MOVQ SI, R11
	LOAD8
	TRANSPOSE8
	STORE8(0)
	LEAQ (SI)(R9*1), R11
	LOAD8
	TRANSPOSE8
	STORE8(32)
	ADDQ $32, SI              // next 8 columns of the source
	ADDQ $512, DI             // next 8 steps of the panel
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// deal16 deals rows of a row-major B out to panels of 16 columns:
//
//	dst[r*16 + t*stride + j] = src[r*lds + t*16 + j]   for r < rows, t < panels, j < 16
//
// (lds and stride in floats; stride is the size of one panel, kb*16). It
// is the packing of B = W in the input-gradient product, a row of W at a
// time, each read front to back, and the row 4 below prefetched line by
// line meanwhile: W comes from memory, a few lines of each row far apart.
// Packing a 2048x2048 W in 256x256 blocks took a third less CPU time so
// than with a call per row and no prefetch (measured A/B, Zen 3), the
// prefetch and the calls saved about half each.

// func deal16(rows, panels int, src *float32, lds int, dst *float32, stride int)
TEXT ·deal16(SB), NOSPLIT, $0-48
	MOVQ rows+0(FP), BX
	MOVQ panels+8(FP), R9
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R8
	MOVQ dst+32(FP), DI
	MOVQ stride+40(FP), R10
	SHLQ $2, R8               // bytes between rows of src
	SHLQ $2, R10              // bytes between panels
	TESTQ BX, BX
	JZ    dealt
	TESTQ R9, R9
	JZ    dealt

row:
	MOVQ SI, R11
	LEAQ (SI)(R8*4), R13      // the same columns 4 rows down
	MOVQ DI, R12
	MOVQ R9, CX

panel:
	PREFETCHT0 (R13)
	VMOVUPS    (R11), Y0
	VMOVUPS    32(R11), Y1
	VMOVUPS    Y0, (R12)
	VMOVUPS    Y1, 32(R12)
	ADDQ       $64, R11
	ADDQ       $64, R13
	ADDQ       R10, R12
	DECQ       CX
	JNZ        panel
	ADDQ       R8, SI
	ADDQ       $64, DI        // the next step of every panel
	DECQ       BX
	JNZ        row

dealt:
	VZEROUPPER
	RET

// transpose6x8 packs 6 rows of a row-major A into an A panel of the 6x16
// kernel:
//
//	dst[q*6 + i] = src[i*lds + q]   for i < 6, q < 8*k8
//
// eight columns at a time: the 6 rows, with two zero rows under them, as
// one 8x8 transpose (AVX), each transposed column stored 6 floats wide. It
// is the packing of A = X in the forward product and of A = dY in the
// input-gradient product, where a scalar gather cost a sixth of the
// multiplication at the small model's shapes.

// func transpose6x8(k8 int, src *float32, lds int, dst *float32)
TEXT ·transpose6x8(SB), NOSPLIT, $0-32
	MOVQ k8+0(FP), CX
	MOVQ src+8(FP), R11
	MOVQ lds+16(FP), R8
	MOVQ dst+24(FP), DI
	SHLQ $2, R8               // bytes between rows
	LEAQ (R8)(R8*2), R10      // 3 rows
	TESTQ CX, CX
	JZ    done6

loop6:
	VXORPS  Y6, Y6, Y6        // the two zero rows (TRANSPOSE8 reuses Y6, Y7)
	VXORPS  Y7, Y7, Y7
	VMOVUPS (R11), Y0
	VMOVUPS (R11)(R8*1), Y1
	VMOVUPS (R11)(R8*2), Y2
	VMOVUPS (R11)(R10*1), Y3
	LEAQ    (R11)(R8*4), R12
	VMOVUPS (R12), Y4
	VMOVUPS (R12)(R8*1), Y5
	TRANSPOSE8
	// Column c goes to DI + 24c bytes. Each 8-float store but the last
	// writes two zeros past its column, which the next store overwrites;
	// the last is split so as to stay inside the 48 floats.
	VMOVUPS Y8, 0(DI)
	VMOVUPS Y9, 24(DI)
	VMOVUPS Y10, 48(DI)
	VMOVUPS Y11, 72(DI)
	VMOVUPS Y12, 96(DI)
	VMOVUPS Y13, 120(DI)
	VMOVUPS Y14, 144(DI)
	VMOVUPS X15, 168(DI)
	VEXTRACTF128 $1, Y15, X0
	VMOVQ   X0, 184(DI)
	ADDQ    $32, R11          // next 8 columns of the source
	ADDQ    $192, DI          // next 8 steps of the panel
	DECQ    CX
	JNZ     loop6

done6:
	VZEROUPPER
	RET

// deal6 deals rows of a transposed A out to panels of 6 rows (of op(A)):
//
//	dst[r*6 + t*stride + j] = src[r*lds + t*6 + j]   for r < rows, t < panels, j < 6
//
// (lds and stride in floats; stride is the size of one panel, kb*6), as 4
// and 2 floats. It is the packing of A = dY^T in the weight-gradient
// product, a row of dY at a time, prefetching as deal16 does.

// func deal6(rows, panels int, src *float32, lds int, dst *float32, stride int)
TEXT ·deal6(SB), NOSPLIT, $0-48
	MOVQ rows+0(FP), BX
	MOVQ panels+8(FP), R9
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R8
	MOVQ dst+32(FP), DI
	MOVQ stride+40(FP), R10
	SHLQ $2, R8
	SHLQ $2, R10
	TESTQ BX, BX
	JZ    dealt6
	TESTQ R9, R9
	JZ    dealt6

row6:
	MOVQ SI, R11
	LEAQ (SI)(R8*4), R13
	MOVQ DI, R12
	MOVQ R9, CX

panel6:
	PREFETCHT0 (R13)
	VMOVUPS    (R11), X0
	VMOVQ      16(R11), X1
	VMOVUPS    X0, (R12)
	VMOVQ      X1, 16(R12)
	ADDQ       $24, R11
	ADDQ       $24, R13
	ADDQ       R10, R12
	DECQ       CX
	JNZ        panel6
	ADDQ       R8, SI
	ADDQ       $24, DI
	DECQ       BX
	JNZ        row6

dealt6:
	RET
