//go:build !purego

// The packing routines of the microkernels' panels (AVX):
//
//	transposeBy8: dst[q*8g + j] = src[j*lds + q]   rows of A, or of B^T, into a panel 8g wide
//	transpose6x8: dst[q*6 + i] = src[i*lds + q]    6 rows of A into a panel 6 tall
//	dealBy8:      dst[r*w + t*stride + j] = src[r*lds + t*w + j]   rows of B, or of A^T, out to panels w wide
//	deal6:        the same for panels 6 wide
//
// They are exact copies, so they change the packed bits nowhere; they only
// replace scalar gathers that cost as much as the multiplication at small
// batches.

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

// STORE8 stores the transposed rows (Y8..Y15) at DX, R14 bytes apart
// (R13 = 3*R14), using R12.
#define STORE8 \
	VMOVUPS Y8, (DX)          \
	VMOVUPS Y9, (DX)(R14*1)   \
	VMOVUPS Y10, (DX)(R14*2)  \
	VMOVUPS Y11, (DX)(R13*1)  \
	LEAQ    (DX)(R14*4), R12  \
	VMOVUPS Y12, (R12)        \
	VMOVUPS Y13, (R12)(R14*1) \
	VMOVUPS Y14, (R12)(R14*2) \
	VMOVUPS Y15, (R12)(R13*1)

// transposeBy8 packs 8*groups rows of a row-major matrix into a panel
// 8*groups wide,
//
//	dst[q*8g + j] = src[j*lds + q]   for j < 8g (g = groups), q < 8*k8
//
// as 8x8 transposes, 8 rows at a time, each over all its columns before
// the next. (Taking all the panel's rows for each 8 columns instead, rows
// 8 KiB apart left L1 before the second half of each of their lines was
// read: 1.4 times as long for 16 rows and 2.4 for 32 from W rows 2048
// wide, measured A/B on Zen 5.) It packs a B panel from B^T (W in the
// forward product, 16 or 32 rows) or an A panel of the 8x32 kernel from A
// (8 rows).

// func transposeBy8(k8, groups int, src *float32, lds int, dst *float32)
TEXT ·transposeBy8(SB), NOSPLIT, $0-40
	MOVQ k8+0(FP), CX
	MOVQ groups+8(FP), BX
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R8
	MOVQ dst+32(FP), DI
	SHLQ $2, R8               // bytes between rows of src
	LEAQ (R8)(R8*2), R10      // 3 rows
	MOVQ R8, R9
	SHLQ $3, R9               // 8 rows: the next group
	MOVQ BX, R14
	SHLQ $5, R14              // bytes between steps of the panel
	LEAQ (R14)(R14*2), R13    // 3 steps
	TESTQ CX, CX
	JZ    done
	TESTQ BX, BX
	JZ    done

group:
	MOVQ SI, R11              // the group's 8 rows
	MOVQ DI, DX               // its 8 columns of the panel
	MOVQ CX, AX

loop:
	LOAD8
	TRANSPOSE8
	STORE8
	ADDQ $32, R11             // next 8 columns of the source
	LEAQ (DX)(R14*8), DX      // next 8 steps of the panel
	DECQ AX
	JNZ  loop
	ADDQ R9, SI               // next 8 rows
	ADDQ $32, DI
	DECQ BX
	JNZ  group

done:
	VZEROUPPER
	RET

// dealBy8 deals rows of a row-major matrix out to panels width floats
// wide, width a multiple of 8:
//
//	dst[r*width + t*stride + j] = src[r*lds + t*width + j]   for r < rows, t < panels, j < width
//
// (lds and stride in floats; stride is the size of one panel, kb*width).
// It is the packing of B = W in the input-gradient product (panels 16 or
// 32 wide) and of A = dY^T in the weight-gradient product (8 tall), a row
// at a time, each read front to back, and the row 4 below prefetched
// meanwhile: W comes from memory, a few lines of each row far apart. (It
// prefetches every 32 bytes, each line twice, and measured as fast as the
// 16-wide routine it replaced, which did so every 64: A/B on Zen 5.)
// Packing a 2048x2048 W in 256x256 blocks took a third less CPU time so
// than with a call per row and no prefetch (measured A/B, Zen 3), the
// prefetch and the calls saved about half each.

// func dealBy8(rows, panels, width int, src *float32, lds int, dst *float32, stride int)
TEXT ·dealBy8(SB), NOSPLIT, $0-56
	MOVQ rows+0(FP), BX
	MOVQ panels+8(FP), R9
	MOVQ width+16(FP), R14
	MOVQ src+24(FP), SI
	MOVQ lds+32(FP), R8
	MOVQ dst+40(FP), DI
	MOVQ stride+48(FP), R10
	SHLQ $2, R8               // bytes between rows of src
	SHLQ $2, R10              // bytes between panels
	SHLQ $2, R14              // bytes of a panel's row
	TESTQ BX, BX
	JZ    dealt
	TESTQ R9, R9
	JZ    dealt
	CMPQ  R14, $32
	JLT   dealt

row:
	MOVQ SI, R11
	LEAQ (SI)(R8*4), R13      // the same columns 4 rows down
	MOVQ DI, R12
	MOVQ R9, CX

panel:
	XORQ AX, AX               // bytes done of the panel's row

vec:
	PREFETCHT0 (R13)(AX*1)
	VMOVUPS    (R11)(AX*1), Y0
	VMOVUPS    Y0, (R12)(AX*1)
	ADDQ       $32, AX
	CMPQ       AX, R14
	JLT        vec
	ADDQ       R14, R11
	ADDQ       R14, R13
	ADDQ       R10, R12
	DECQ       CX
	JNZ        panel
	ADDQ       R8, SI
	ADDQ       R14, DI        // the next step of every panel
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
// product, a row of dY at a time, prefetching as dealBy8 does.

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
