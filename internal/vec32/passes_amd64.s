//go:build !purego

// The reductions and elementwise passes of vec32 (reduce.go, columns.go,
// elementwise.go, gelu.go) with AVX2, 8 floats a step; n is always a
// positive multiple of 8. Each loop performs the
// Go loop's operations in the Go loop's order, lane by lane: VCVTPS2PD,
// VCVTPD2PS and every arithmetic instruction used here round exactly as
// Go's conversions and float32 or float64 operators do (round to nearest
// even), and nothing is fused except in GELU, whose FMAs are
// exactfma.Float32 in its Go definition. The Go loops are the definition;
// the tests compare the two bit for bit.

#include "textflag.h"
#include "gelu_tables_amd64.h"

// func sumLanes(n int, x *float32, l *lanes)
// l[j%8] += x[j]: lanes 0-3 in Y0, 4-7 in Y1.
TEXT ·sumLanes(SB), NOSPLIT, $0-24
	MOVQ    n+0(FP), CX
	MOVQ    x+8(FP), SI
	MOVQ    l+16(FP), AX
	VMOVUPD (AX), Y0
	VMOVUPD 32(AX), Y1
	SHRQ    $3, CX

sumloop:
	VCVTPS2PD (SI), Y2
	VCVTPS2PD 16(SI), Y3
	VADDPD    Y2, Y0, Y0
	VADDPD    Y3, Y1, Y1
	ADDQ      $32, SI
	DECQ      CX
	JNZ       sumloop
	VMOVUPD   Y0, (AX)
	VMOVUPD   Y1, 32(AX)
	VZEROUPPER
	RET

// func dotLanes(n int, x, y *float32, l *lanes)
// l[j%8] += x[j]*y[j], the product exact in float64.
TEXT ·dotLanes(SB), NOSPLIT, $0-32
	MOVQ    n+0(FP), CX
	MOVQ    x+8(FP), SI
	MOVQ    y+16(FP), DI
	MOVQ    l+24(FP), AX
	VMOVUPD (AX), Y0
	VMOVUPD 32(AX), Y1
	SHRQ    $3, CX

dotloop:
	VCVTPS2PD (SI), Y2
	VCVTPS2PD 16(SI), Y3
	VCVTPS2PD (DI), Y4
	VCVTPS2PD 16(DI), Y5
	VMULPD    Y4, Y2, Y2
	VMULPD    Y5, Y3, Y3
	VADDPD    Y2, Y0, Y0
	VADDPD    Y3, Y1, Y1
	ADDQ      $32, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       dotloop
	VMOVUPD   Y0, (AX)
	VMOVUPD   Y1, 32(AX)
	VZEROUPPER
	RET

// func sqDevLanes(n int, x *float32, mean float64, l *lanes)
// d = x[j] - mean; l[j%8] += d*d.
TEXT ·sqDevLanes(SB), NOSPLIT, $0-32
	MOVQ         n+0(FP), CX
	MOVQ         x+8(FP), SI
	VBROADCASTSD mean+16(FP), Y15
	MOVQ         l+24(FP), AX
	VMOVUPD      (AX), Y0
	VMOVUPD      32(AX), Y1
	SHRQ         $3, CX

sqdevloop:
	VCVTPS2PD (SI), Y2
	VCVTPS2PD 16(SI), Y3
	VSUBPD    Y15, Y2, Y2
	VSUBPD    Y15, Y3, Y3
	VMULPD    Y2, Y2, Y2
	VMULPD    Y3, Y3, Y3
	VADDPD    Y2, Y0, Y0
	VADDPD    Y3, Y1, Y1
	ADDQ      $32, SI
	DECQ      CX
	JNZ       sqdevloop
	VMOVUPD   Y0, (AX)
	VMOVUPD   Y1, 32(AX)
	VZEROUPPER
	RET

// func addTo(n int, acc *float64, x *float32)
// acc[j] += x[j].
TEXT ·addTo(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ acc+8(FP), DI
	MOVQ x+16(FP), SI
	SHRQ $3, CX

addtoloop:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD 16(SI), Y1
	VADDPD    (DI), Y0, Y0
	VADDPD    32(DI), Y1, Y1
	VMOVUPD   Y0, (DI)
	VMOVUPD   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       addtoloop
	VZEROUPPER
	RET

// func layerNormApply(n int, y, xhat, x, gamma, beta *float32, mean, rstd float64)
// h = float32((x[j] - mean) * rstd); xhat[j] = h; y[j] = h*gamma[j] + beta[j].
// x is read before y is written, so y may alias x.
TEXT ·layerNormApply(SB), NOSPLIT, $0-64
	MOVQ         n+0(FP), CX
	MOVQ         y+8(FP), DI
	MOVQ         xhat+16(FP), SI
	MOVQ         x+24(FP), DX
	MOVQ         gamma+32(FP), R8
	MOVQ         beta+40(FP), R9
	VBROADCASTSD mean+48(FP), Y14
	VBROADCASTSD rstd+56(FP), Y15
	XORQ         BX, BX
	SHRQ         $3, CX

lnapplyloop:
	VCVTPS2PD   (DX)(BX*1), Y0
	VCVTPS2PD   16(DX)(BX*1), Y1
	VSUBPD      Y14, Y0, Y0
	VSUBPD      Y14, Y1, Y1
	VMULPD      Y15, Y0, Y0
	VMULPD      Y15, Y1, Y1
	VCVTPD2PSY  Y0, X0
	VCVTPD2PSY  Y1, X1
	VINSERTF128 $1, X1, Y0, Y0
	VMOVUPS     Y0, (SI)(BX*1)
	VMULPS      (R8)(BX*1), Y0, Y2
	VADDPS      (R9)(BX*1), Y2, Y2
	VMOVUPS     Y2, (DI)(BX*1)
	ADDQ        $32, BX
	DECQ        CX
	JNZ         lnapplyloop
	VZEROUPPER
	RET

// func axpby(n int, dst, x, y *float32, a, b float64)
// dst[j] = float32(x[j]*a + y[j]*b), each product rounded to float64.
TEXT ·axpby(SB), NOSPLIT, $0-48
	MOVQ         n+0(FP), CX
	MOVQ         dst+8(FP), DI
	MOVQ         x+16(FP), SI
	MOVQ         y+24(FP), DX
	VBROADCASTSD a+32(FP), Y14
	VBROADCASTSD b+40(FP), Y15
	XORQ         BX, BX
	SHRQ         $3, CX

axpbyloop:
	VCVTPS2PD   (SI)(BX*1), Y0
	VCVTPS2PD   16(SI)(BX*1), Y1
	VCVTPS2PD   (DX)(BX*1), Y2
	VCVTPS2PD   16(DX)(BX*1), Y3
	VMULPD      Y14, Y0, Y0
	VMULPD      Y14, Y1, Y1
	VMULPD      Y15, Y2, Y2
	VMULPD      Y15, Y3, Y3
	VADDPD      Y2, Y0, Y0
	VADDPD      Y3, Y1, Y1
	VCVTPD2PSY  Y0, X0
	VCVTPD2PSY  Y1, X1
	VINSERTF128 $1, X1, Y0, Y0
	VMOVUPS     Y0, (DI)(BX*1)
	ADDQ        $32, BX
	DECQ        CX
	JNZ         axpbyloop
	VZEROUPPER
	RET

// GELU and its derivative (gelu.go), with the same operations in the same
// order as geluPoly, geluR, geluD, geluExp, GELU and GELUGrad: the
// whole-range formulas, which GELUs and GELUGradMul run only on the
// vectors with a lane outside the body (|x| >= 4; gelu_body_amd64.s does
// the rest). A vector's
// piece polynomial needs 14 values picked by VPERMILPS, one a piece from
// a row of 4 held twice (the centre, eleven coefficients, the low parts
// of the constant and of h's coefficient). VPERMILPS picks within each
// 128-bit lane and, on Zen 3 (measured), issues mostly beside the FMAs,
// where the cross-lane VPERMPS that 8 pieces would need costs as much as
// two FMAs; the polynomial is still most of the work. A vector's chains
// of dependent steps (the polynomial's FMAs, the exponential's reduction
// and polynomial, the output) are about 80 cycles long. So each block of
// up to GELU_BLOCK bytes of x goes through three short loops whose
// iterations the core overlaps: the polynomial for four vectors at a
// time, which has the registers to hold each row once for the four, the
// exponential for three and the output for two. The first two leave their
// results in a 32-byte-aligned buffer on the stack (in L1) for the third;
// each reads x.
//
// DX holds &geluC (offsets in gelu_tables_amd64.h), R8 the buffer, SI x,
// DI y or dx, R9 dy, CX the bytes of x left, R11 the bytes of this block,
// BX the offset in it; Y14 the mask of |x| and Y15 1.0 (whose bits,
// 0x3f800000, also make 2^-n), except at the end of the polynomial,
// which borrows them for two rows and restores them (GELU_CONSTS). Macro
// arguments J, H, R and the like name a vector's registers, T a row in a
// register, k a row of P (the coefficient of h^k, the high part for k =
// 0 and 1; the constant's low part at GELU_DEGREE+1, h's at
// GELU_DEGREE+2) and off a byte offset.

#define GELU_BLOCK 768 // bytes of x a block: 24 vectors
#define GELU_BUF_V 0 // the buffer: v, vLo, w and 2^-n for each float of the block
#define GELU_BUF_VLO 768
#define GELU_BUF_W 1536
#define GELU_BUF_SCALE 2304

// GELU_INDEX sets, for x at off(SI)(BX*1), R = a = |x| and J = the piece
// index j (in the low 2 bits, all VPERMILPS looks at).
#define GELU_INDEX(off, J, R)        \
	VANDPS off(SI)(BX*1), Y14, R \
	VADDPS Y15, R, J             \
	VPSRLD $23, J, J               // j = bits(a + 1) >> 23 (& 3)

// GELU_H: H = h = a - centre (the centres in register T).
#define GELU_H(T, J, H, R) \
	VPERMILPS J, T, H  \
	VSUBPS    H, R, H

// GELU_HORNER: r = fma(r, h, the coefficient in register T); Y13 is
// scratch. Each P starts as its highest coefficient, r = VPERMILPS J, T, R.
#define GELU_HORNER(T, J, H, R) \
	VPERMILPS   J, T, Y13   \
	VFMADD213PS Y13, H, R

// GELU_V stores v = r + the constant's high part (in T; left in H).
#define GELU_V(T, off, J, H, R) \
	VPERMILPS J, T, H       \
	VADDPS    H, R, J       \
	VMOVUPS J, GELU_BUF_V+off(R8)(BX*1)

// GELU_VLO stores vLo = (high part - v) + r, after GELU_V.
#define GELU_VLO(off, J, H, R) \
	VSUBPS  J, H, H        \
	VADDPS  R, H, H        \
	VMOVUPS H, GELU_BUF_VLO+off(R8)(BX*1)

// GELU_LOW: r = fma(r, h, fma(c1lo, h, c0lo)), the low parts of h's
// coefficient and of the constant in Y14 and Y15 (GELU_ROWS); Y12 and
// Y13 are scratch.
#define GELU_LOW(J, H, R)       \
	VPERMILPS   J, Y14, Y12 \
	VPERMILPS   J, Y15, Y13 \
	VFMADD213PS Y13, H, Y12 \
	VFMADD213PS Y12, H, R

// GELU_D_V stores D's v = fma(c1hi, h, c0hi) + z, with z in R and the
// high parts of h's coefficient and of the constant in Y14 and Y15
// (GELU_ROWS); Y12 and Y13 are scratch.
#define GELU_D_V(off, J, H, R)  \
	VPERMILPS   J, Y14, Y12 \
	VPERMILPS   J, Y15, Y13 \
	VFMADD213PS Y13, H, Y12 \
	VADDPS      R, Y12, Y12 \
	VMOVUPS     Y12, GELU_BUF_V+off(R8)(BX*1)

// GELU_ROWS loads P's rows k1 and k0 into Y14 and Y15, which GELU_CONSTS
// then restores.
#define GELU_ROWS(poly, k1, k0)        \
	VMOVUPS poly+32*(k1)(DX), Y14 \
	VMOVUPS poly+32*(k0)(DX), Y15

// GELU_CONSTS loads the |x| mask into Y14 and 1.0 into Y15.
#define GELU_CONSTS            \
	VPCMPEQD Y14, Y14, Y14 \
	VPSRLD   $1, Y14, Y14  \
	VMOVUPS  GELU_ONE(DX), Y15

// GELU_ROW loads row k of P into Y12.
#define GELU_ROW(poly, k) VMOVUPS poly+32*(k)(DX), Y12

#define GELU_HORNER4(poly, k)        \
	GELU_ROW(poly, k)            \
	GELU_HORNER(Y12, Y0, Y1, Y2) \
	GELU_HORNER(Y12, Y3, Y4, Y5) \
	GELU_HORNER(Y12, Y6, Y7, Y8) \
	GELU_HORNER(Y12, Y9, Y10, Y11)

#define GELU_HORNER1(poly, k) \
	GELU_ROW(poly, k)     \
	GELU_HORNER(Y12, Y0, Y1, Y2)

// GELU_POLY4 evaluates s, P's terms of degree 2 and up over h² (geluPoly),
// by Horner's rule for the four vectors at BX, and leaves s in Y2, Y5,
// Y8, Y11, h in Y1, Y4, Y7, Y10 and j in Y0, Y3, Y6, Y9; GELU_POLY1 the
// same for the one vector at BX, in Y2, Y1 and Y0.
#define GELU_POLY4(poly)             \
	GELU_INDEX(0, Y0, Y2)        \
	GELU_INDEX(32, Y3, Y5)       \
	GELU_INDEX(64, Y6, Y8)       \
	GELU_INDEX(96, Y9, Y11)      \
	VMOVUPS GELU_CENTRE(DX), Y12 \
	GELU_H(Y12, Y0, Y1, Y2)      \
	GELU_H(Y12, Y3, Y4, Y5)      \
	GELU_H(Y12, Y6, Y7, Y8)      \
	GELU_H(Y12, Y9, Y10, Y11)    \
	GELU_ROW(poly, GELU_DEGREE)  \
	VPERMILPS Y0, Y12, Y2        \
	VPERMILPS Y3, Y12, Y5        \
	VPERMILPS Y6, Y12, Y8        \
	VPERMILPS Y9, Y12, Y11       \
	GELU_HORNER4(poly, 9)        \
	GELU_HORNER4(poly, 8)        \
	GELU_HORNER4(poly, 7)        \
	GELU_HORNER4(poly, 6)        \
	GELU_HORNER4(poly, 5)        \
	GELU_HORNER4(poly, 4)        \
	GELU_HORNER4(poly, 3)        \
	GELU_HORNER4(poly, 2)

#define GELU_POLY1(poly)             \
	GELU_INDEX(0, Y0, Y2)        \
	VMOVUPS GELU_CENTRE(DX), Y12 \
	GELU_H(Y12, Y0, Y1, Y2)      \
	GELU_ROW(poly, GELU_DEGREE)  \
	VPERMILPS Y0, Y12, Y2        \
	GELU_HORNER1(poly, 9)        \
	GELU_HORNER1(poly, 8)        \
	GELU_HORNER1(poly, 7)        \
	GELU_HORNER1(poly, 6)        \
	GELU_HORNER1(poly, 5)        \
	GELU_HORNER1(poly, 4)        \
	GELU_HORNER1(poly, 3)        \
	GELU_HORNER1(poly, 2)

// GELU_R_STEP4 and GELU_R_STEP1: the polynomial loop's steps for GELU (v
// and vLo of R, geluR), GELU_D_STEP4 and GELU_D_STEP1 for the derivative
// (v of D, geluD: z = fma(s h, h, low parts) in place of s).
#define GELU_R_STEP4                                  \
	GELU_POLY4(GELU_R)                            \
	GELU_HORNER4(GELU_R, 1)                       \
	GELU_ROWS(GELU_R, GELU_DEGREE+2, GELU_DEGREE+1) \
	GELU_LOW(Y0, Y1, Y2)                          \
	GELU_LOW(Y3, Y4, Y5)                          \
	GELU_LOW(Y6, Y7, Y8)                          \
	GELU_LOW(Y9, Y10, Y11)                        \
	GELU_CONSTS                                   \
	GELU_ROW(GELU_R, 0)                           \
	GELU_V(Y12, 0, Y0, Y1, Y2)                    \
	GELU_V(Y12, 32, Y3, Y4, Y5)                   \
	GELU_V(Y12, 64, Y6, Y7, Y8)                   \
	GELU_V(Y12, 96, Y9, Y10, Y11)                 \
	GELU_VLO(0, Y0, Y1, Y2)                       \
	GELU_VLO(32, Y3, Y4, Y5)                      \
	GELU_VLO(64, Y6, Y7, Y8)                      \
	GELU_VLO(96, Y9, Y10, Y11)

#define GELU_R_STEP1                                  \
	GELU_POLY1(GELU_R)                            \
	GELU_HORNER1(GELU_R, 1)                       \
	GELU_ROWS(GELU_R, GELU_DEGREE+2, GELU_DEGREE+1) \
	GELU_LOW(Y0, Y1, Y2)                          \
	GELU_CONSTS                                   \
	GELU_ROW(GELU_R, 0)                           \
	GELU_V(Y12, 0, Y0, Y1, Y2)                    \
	GELU_VLO(0, Y0, Y1, Y2)

#define GELU_D_STEP4                                  \
	GELU_POLY4(GELU_D)                            \
	VMULPS Y1, Y2, Y2                             \ // s h
	VMULPS Y4, Y5, Y5                             \
	VMULPS Y7, Y8, Y8                             \
	VMULPS Y10, Y11, Y11                          \
	GELU_ROWS(GELU_D, GELU_DEGREE+2, GELU_DEGREE+1) \
	GELU_LOW(Y0, Y1, Y2)                          \ // z
	GELU_LOW(Y3, Y4, Y5)                          \
	GELU_LOW(Y6, Y7, Y8)                          \
	GELU_LOW(Y9, Y10, Y11)                        \
	GELU_ROWS(GELU_D, 1, 0)                       \
	GELU_D_V(0, Y0, Y1, Y2)                       \
	GELU_D_V(32, Y3, Y4, Y5)                      \
	GELU_D_V(64, Y6, Y7, Y8)                      \
	GELU_D_V(96, Y9, Y10, Y11)                    \
	GELU_CONSTS

#define GELU_D_STEP1                                  \
	GELU_POLY1(GELU_D)                            \
	VMULPS Y1, Y2, Y2                             \
	GELU_ROWS(GELU_D, GELU_DEGREE+2, GELU_DEGREE+1) \
	GELU_LOW(Y0, Y1, Y2)                          \
	GELU_ROWS(GELU_D, 1, 0)                       \
	GELU_D_V(0, Y0, Y1, Y2)                       \
	GELU_CONSTS

// GELU_REDUCE sets, for x at off(SI)(BX*1) and a = |x|, J = t = a² - 2n
// ln2 (a² = hi + lo), R = n; A is scratch.
#define GELU_REDUCE(off, A, J, R)                 \
	VANDPS      off(SI)(BX*1), Y14, A         \ // a
	VMULPS      A, A, J                       \ // hi
	VFMSUB213PS J, A, A                       \ // lo = a*a - hi, exact
	VMULPS      GELU_HALF_LOG2E(DX), J, R     \
	VROUNDPS    $0, R, R                      \ // n, to nearest even
	VFMADD231PS GELU_NEG_TWO_LN2_HI(DX), R, J \
	VFMADD231PS GELU_NEG_TWO_LN2_LO(DX), R, J \
	VADDPS      A, J, J

// GELU_EXPONENTIAL stores w = t² g(t) - t/2 = exp(-t/2) - 1, g by
// Horner's rule, and 2^-n, after GELU_REDUCE.
#define GELU_EXPONENTIAL(off, A, J, H, R)       \
	VMULPS      J, J, A                     \ // t2
	VMOVUPS     GELU_EXP+32*4(DX), H        \
	VFMADD213PS GELU_EXP+32*3(DX), J, H     \
	VFMADD213PS GELU_EXP+32*2(DX), J, H     \
	VFMADD213PS GELU_EXP+32*1(DX), J, H     \
	VFMADD213PS GELU_EXP+32*0(DX), J, H     \ // g
	VMULPS      GELU_NEG_HALF(DX), J, J     \
	VFMADD213PS J, A, H                     \ // w
	VCVTPS2DQ   R, R                        \
	VPSLLD      $23, R, R                   \
	VPSUBD      R, Y15, R                   \ // 2^-n, n <= 126 for |x| < limit
	VMOVUPS     H, GELU_BUF_W+off(R8)(BX*1) \
	VMOVUPS     R, GELU_BUF_SCALE+off(R8)(BX*1)

// GELU_EXP_STEP3 and GELU_EXP_STEP1: the exponential loop's steps, for
// three vectors and for one.
#define GELU_EXP_STEP3                       \
	GELU_REDUCE(0, Y0, Y1, Y3)           \
	GELU_REDUCE(32, Y4, Y5, Y7)          \
	GELU_REDUCE(64, Y8, Y9, Y11)         \
	GELU_EXPONENTIAL(0, Y0, Y1, Y2, Y3)  \
	GELU_EXPONENTIAL(32, Y4, Y5, Y6, Y7) \
	GELU_EXPONENTIAL(64, Y8, Y9, Y10, Y11)

#define GELU_EXP_STEP1             \
	GELU_REDUCE(0, Y0, Y1, Y3) \
	GELU_EXPONENTIAL(0, Y0, Y1, Y2, Y3)

// GELU_RANGE sets X = x (at off(SI)(BX*1)) and A = the lanes with |x| <
// limit or NaN.
#define GELU_RANGE(off, X, A)    \
	VMOVUPS off(SI)(BX*1), X \
	VANDPS  Y14, X, A        \
	VCMPPS  $0x19, GELU_LIMIT(DX), A, A // !(|x| >= limit): in range or NaN

// GELU_OUT: M = (v + (v w + vLo)) 2^-n (0 out of range) in H, and stores
// x M for x < 0 (sign bit set), x - x M otherwise, x itself where |x| >=
// limit (M = 0 there, but +Inf M is NaN), to off(DI)(BX*1).
#define GELU_OUT(off, X, A, H, R, U)                    \
	GELU_RANGE(off, X, A)                           \
	VMOVUPS      GELU_BUF_V+off(R8)(BX*1), U        \
	VMOVUPS      GELU_BUF_W+off(R8)(BX*1), H        \
	VFMADD213PS  GELU_BUF_VLO+off(R8)(BX*1), U, H   \
	VADDPS       H, U, H                            \
	VMULPS       GELU_BUF_SCALE+off(R8)(BX*1), H, H \
	VANDPS       A, H, H                            \
	VMULPS       X, H, R                            \ // x M
	VMOVAPS      X, U                               \
	VFNMADD231PS H, X, U                            \ // x - x M
	VBLENDVPS    A, U, X, U                         \
	VBLENDVPS    X, R, U, R                         \
	VMOVUPS      R, off(DI)(BX*1)

// GELU_GRAD_OUT: M = (v + v w) 2^-n (0 out of range), and stores dy
// times M for x < 0 (sign bit set), 1 - M otherwise, to off(DI)(BX*1).
#define GELU_GRAD_OUT(off, X, A, H, U)                 \
	GELU_RANGE(off, X, A)                          \
	VMOVUPS     GELU_BUF_V+off(R8)(BX*1), U        \
	VMOVUPS     GELU_BUF_W+off(R8)(BX*1), H        \
	VFMADD231PS U, H, U                            \
	VMULPS      GELU_BUF_SCALE+off(R8)(BX*1), U, U \
	VANDPS      A, U, U                            \
	VSUBPS      U, Y15, H                          \
	VBLENDVPS   X, U, H, H                         \
	VMULPS      off(R9)(BX*1), H, H                \
	VMOVUPS     H, off(DI)(BX*1)

#define GELU_OUT_STEP2                  \
	GELU_OUT(0, Y0, Y1, Y2, Y3, Y4) \
	GELU_OUT(32, Y5, Y6, Y7, Y8, Y9)

#define GELU_OUT_STEP1 \
	GELU_OUT(0, Y0, Y1, Y2, Y3, Y4)

#define GELU_GRAD_OUT_STEP2              \
	GELU_GRAD_OUT(0, Y0, Y1, Y2, Y3) \
	GELU_GRAD_OUT(32, Y5, Y6, Y7, Y8)

#define GELU_GRAD_OUT_STEP1 \
	GELU_GRAD_OUT(0, Y0, Y1, Y2, Y3)

// GELU_LOOP runs step over the block (from BX = 0) as long as a whole
// step of bytes fits, then step1, a vector, over what is left; name,
// tail and done are its labels.
#define GELU_LOOP(name, tail, done, bytes, step, step1) \
	XORQ BX, BX                                     \
name:                                                   \
	LEAQ bytes(BX), AX                              \
	CMPQ AX, R11                                    \
	JGT  tail                                       \
	step                                            \
	MOVQ AX, BX                                     \
	JMP  name                                       \
tail:                                                   \
	CMPQ BX, R11                                    \
	JGE  done                                       \
	step1                                           \
	ADDQ $32, BX                                    \
	JMP  tail                                       \
done:

// GELU_SETUP loads &geluC into DX, the |x| mask into Y14 and 1.0 into
// Y15, the 32-byte-aligned buffer into R8, and turns CX from floats into
// bytes.
#define GELU_SETUP(c)              \
	MOVQ     c, DX             \
	GELU_CONSTS                \
	MOVQ     SP, R8            \
	ADDQ     $32, R8           \
	ANDQ     $-32, R8          \
	SHLQ     $2, CX

// GELU_NEXT_BLOCK sets R11 to the bytes of the next block.
#define GELU_NEXT_BLOCK          \
	MOVQ    $GELU_BLOCK, R11 \
	CMPQ    CX, R11          \
	CMOVQLT CX, R11

// func geluAVX2(n int, y, x *float32, c *float32)
TEXT ·geluAVX2(SB), $3104-32 // frame: the buffer and 32 bytes to align it
	MOVQ n+0(FP), CX
	MOVQ y+8(FP), DI
	MOVQ x+16(FP), SI
	GELU_SETUP(c+24(FP))

gelublock:
	GELU_NEXT_BLOCK
	GELU_LOOP(gelupoly, gelupolytail, gelupolydone, 128, GELU_R_STEP4, GELU_R_STEP1)
	GELU_LOOP(geluexp, geluexptail, geluexpdone, 96, GELU_EXP_STEP3, GELU_EXP_STEP1)
	GELU_LOOP(geluout, geluouttail, geluoutdone, 64, GELU_OUT_STEP2, GELU_OUT_STEP1)
	ADDQ R11, SI
	ADDQ R11, DI
	SUBQ R11, CX
	JNZ  gelublock
	VZEROUPPER
	RET

// func geluGradMulAVX2(n int, dx, dy, x *float32, c *float32)
TEXT ·geluGradMulAVX2(SB), $3104-40
	MOVQ n+0(FP), CX
	MOVQ dx+8(FP), DI
	MOVQ dy+16(FP), R9
	MOVQ x+24(FP), SI
	GELU_SETUP(c+32(FP))

gelugradblock:
	GELU_NEXT_BLOCK
	GELU_LOOP(gelugradpoly, gelugradpolytail, gelugradpolydone, 128, GELU_D_STEP4, GELU_D_STEP1)
	GELU_LOOP(gelugradexp, gelugradexptail, gelugradexpdone, 96, GELU_EXP_STEP3, GELU_EXP_STEP1)
	GELU_LOOP(gelugradout, gelugradouttail, gelugradoutdone, 64, GELU_GRAD_OUT_STEP2, GELU_GRAD_OUT_STEP1)
	ADDQ R11, SI
	ADDQ R11, DI
	ADDQ R11, R9
	SUBQ R11, CX
	JNZ  gelugradblock
	VZEROUPPER
	RET
