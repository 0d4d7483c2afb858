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
// order as geluTail, GELU and GELUGrad. Two vectors of 8 lanes are in
// flight at once, their steps interleaved, so that one's long dependency
// chains (the polynomial, the exponential) overlap the other's: each
// GELU_* step macro takes a vector's seven registers X (x), A, J, H, R, T,
// U, Y0-Y6 for the first and Y7-Y13 for the second. DX holds &geluC
// (offsets in gelu_tables_amd64.h), Y14 the mask of |x| and Y15 1.0 (whose
// bits, 0x3f800000, also make 2^-n).

// GELU_INDEX loads x from off(SI)(BX*1) into X, a = |x| into A, the piece
// index j into J's low 3 bits (all VPERMPS looks at), h = a - centre into
// H, and P's highest coefficient into R.
#define GELU_INDEX(poly, off, X, A, J, H, R) \
	VMOVUPS     off(SI)(BX*1), X            \
	VANDPS      Y14, X, A                   \
	VADDPS      Y15, A, J                   \
	VPSRLD      $22, J, J                   \ // j = bits(a + 1) >> 22 (& 7)
	VPERMPS     GELU_CENTRE(DX), J, H       \
	VSUBPS      H, A, H                     \
	VPERMPS     poly+32*GELU_DEGREE(DX), J, R

// GELU_HORNER: r = fma(r, h, coefficient k of P).
#define GELU_HORNER(poly, k, J, H, R, T) \
	VPERMPS     poly+32*(k)(DX), J, T \
	VFMADD213PS T, H, R

// GELU_CONSTANT: r = fma(r, h, the constant's low part), then U = v =
// r + its high part (left in T).
#define GELU_CONSTANT(poly, J, H, R, T, U) \
	GELU_HORNER(poly, GELU_DEGREE+1, J, H, R, T) \
	VPERMPS     poly(DX), J, T              \
	VADDPS      T, R, U

// GELU_VLO: T = vLo = (high part - v) + r.
#define GELU_VLO(R, T, U) \
	VSUBPS U, T, T \
	VADDPS R, T, T

// GELU_REDUCE: J = t = a² - 2n ln2 (a² = hi + lo), R = n.
#define GELU_REDUCE(A, J, H, R) \
	VMULPS      A, A, J                     \ // hi
	VMOVAPS     A, H                        \
	VFMSUB213PS J, A, H                     \ // lo = a*a - hi, exact
	VMULPS      GELU_HALF_LOG2E(DX), J, R   \
	VROUNDPS    $0, R, R                    \ // n, to nearest even
	VFMADD231PS GELU_NEG_TWO_LN2_HI(DX), R, J \
	VFMADD231PS GELU_NEG_TWO_LN2_LO(DX), R, J \
	VADDPS      H, J, J

// GELU_EXPONENTIAL: H = w = t² g(t) - t/2 = exp(-t/2) - 1, g by Horner's rule;
// R = 2^-n; A = the lanes with |x| < limit or NaN.
#define GELU_EXPONENTIAL(X, A, J, H, R) \
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
	VPSUBD      R, Y15, R                   \ // 2^-n
	VANDPS      Y14, X, A                   \
	VCMPPS      $0x19, GELU_LIMIT(DX), A, A   // !(|x| >= limit): in range or NaN

// GELU_OUT: M = (v + (v w + vLo)) 2^-n (0 out of range) in H, and stores
// x M for x < 0 (sign bit set), x - x M otherwise, x itself where |x| >=
// limit (M = 0 there, but +Inf M is NaN), to off(DI)(BX*1).
#define GELU_OUT(off, X, A, J, H, R, T, U) \
	VFMADD213PS  T, U, H                    \
	VADDPS       H, U, H                    \
	VMULPS       R, H, H                    \
	VANDPS       A, H, H                    \
	VMULPS       X, H, R                    \ // x M
	VMOVAPS      X, J                       \
	VFNMADD231PS H, X, J                    \ // x - x M
	VBLENDVPS    A, J, X, J                 \
	VBLENDVPS    X, R, J, R                 \
	VMOVUPS      R, off(DI)(BX*1)

// GELU_GRAD_OUT: M = (v + v w) 2^-n (0 out of range), and stores dy times
// M for x < 0 (sign bit set), 1 - M otherwise, to off(DI)(BX*1).
#define GELU_GRAD_OUT(off, X, A, H, R, U) \
	VFMADD231PS U, H, U                     \
	VMULPS      R, U, U                     \
	VANDPS      A, U, U                     \
	VSUBPS      U, Y15, H                   \
	VBLENDVPS   X, U, H, H                  \
	VMULPS      off(R9)(BX*1), H, H         \
	VMOVUPS     H, off(DI)(BX*1)

// GELU_SETUP loads &geluC into DX, the |x| mask into Y14 and 1.0 into
// Y15; CX counts pairs of vectors and R10 is 8 when one is left over.
#define GELU_SETUP(c) \
	MOVQ     c, DX                  \
	VPCMPEQD Y14, Y14, Y14          \
	VPSRLD   $1, Y14, Y14           \
	VMOVUPS  GELU_ONE(DX), Y15      \
	XORQ     BX, BX                 \
	MOVQ     CX, R10                \
	ANDQ     $8, R10                \
	SHRQ     $4, CX


// GELU_BODY computes and stores GELU for the vectors at byte offsets off1
// (registers Y0-Y6) and, interleaved, off2 (Y7-Y13); GELU_BODY1 for one.
#define GELU_BODY(off1, off2) \
	GELU_INDEX(GELU_R, off1, Y0, Y1, Y2, Y3, Y4) \
	GELU_INDEX(GELU_R, off2, Y7, Y8, Y9, Y10, Y11) \
	GELU_HORNER(GELU_R, 7, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 7, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_R, 6, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 6, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_R, 5, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 5, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_R, 4, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 4, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_R, 3, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 3, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_R, 2, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 2, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_R, 1, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 1, Y9, Y10, Y11, Y12) \
	GELU_CONSTANT(GELU_R, Y2, Y3, Y4, Y5, Y6) \
	GELU_CONSTANT(GELU_R, Y9, Y10, Y11, Y12, Y13) \
	GELU_VLO(Y4, Y5, Y6) \
	GELU_VLO(Y11, Y12, Y13) \
	GELU_REDUCE(Y1, Y2, Y3, Y4) \
	GELU_REDUCE(Y8, Y9, Y10, Y11) \
	GELU_EXPONENTIAL(Y0, Y1, Y2, Y3, Y4) \
	GELU_EXPONENTIAL(Y7, Y8, Y9, Y10, Y11) \
	GELU_OUT(off1, Y0, Y1, Y2, Y3, Y4, Y5, Y6) \
	GELU_OUT(off2, Y7, Y8, Y9, Y10, Y11, Y12, Y13)

#define GELU_BODY1 \
	GELU_INDEX(GELU_R, 0, Y0, Y1, Y2, Y3, Y4) \
	GELU_HORNER(GELU_R, 7, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 6, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 5, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 4, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 3, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 2, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_R, 1, Y2, Y3, Y4, Y5) \
	GELU_CONSTANT(GELU_R, Y2, Y3, Y4, Y5, Y6) \
	GELU_VLO(Y4, Y5, Y6) \
	GELU_REDUCE(Y1, Y2, Y3, Y4) \
	GELU_EXPONENTIAL(Y0, Y1, Y2, Y3, Y4) \
	GELU_OUT(0, Y0, Y1, Y2, Y3, Y4, Y5, Y6)

// GELU_GRAD_BODY and GELU_GRAD_BODY1: the same for the derivative.
#define GELU_GRAD_BODY(off1, off2) \
	GELU_INDEX(GELU_D, off1, Y0, Y1, Y2, Y3, Y4) \
	GELU_INDEX(GELU_D, off2, Y7, Y8, Y9, Y10, Y11) \
	GELU_HORNER(GELU_D, 7, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 7, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_D, 6, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 6, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_D, 5, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 5, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_D, 4, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 4, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_D, 3, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 3, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_D, 2, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 2, Y9, Y10, Y11, Y12) \
	GELU_HORNER(GELU_D, 1, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 1, Y9, Y10, Y11, Y12) \
	GELU_CONSTANT(GELU_D, Y2, Y3, Y4, Y5, Y6) \
	GELU_CONSTANT(GELU_D, Y9, Y10, Y11, Y12, Y13) \
	GELU_REDUCE(Y1, Y2, Y3, Y4) \
	GELU_REDUCE(Y8, Y9, Y10, Y11) \
	GELU_EXPONENTIAL(Y0, Y1, Y2, Y3, Y4) \
	GELU_EXPONENTIAL(Y7, Y8, Y9, Y10, Y11) \
	GELU_GRAD_OUT(off1, Y0, Y1, Y3, Y4, Y6) \
	GELU_GRAD_OUT(off2, Y7, Y8, Y10, Y11, Y13)

#define GELU_GRAD_BODY1 \
	GELU_INDEX(GELU_D, 0, Y0, Y1, Y2, Y3, Y4) \
	GELU_HORNER(GELU_D, 7, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 6, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 5, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 4, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 3, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 2, Y2, Y3, Y4, Y5) \
	GELU_HORNER(GELU_D, 1, Y2, Y3, Y4, Y5) \
	GELU_CONSTANT(GELU_D, Y2, Y3, Y4, Y5, Y6) \
	GELU_REDUCE(Y1, Y2, Y3, Y4) \
	GELU_EXPONENTIAL(Y0, Y1, Y2, Y3, Y4) \
	GELU_GRAD_OUT(0, Y0, Y1, Y3, Y4, Y6)

// func geluAVX2(n int, y, x *float32, c *float32)
TEXT ·geluAVX2(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ y+8(FP), DI
	MOVQ x+16(FP), SI
	GELU_SETUP(c+24(FP))
	TESTQ CX, CX
	JZ    geluone

gelupairs:
	GELU_BODY(0, 32)
	ADDQ $64, BX
	DECQ CX
	JNZ  gelupairs

geluone:
	TESTQ R10, R10
	JZ    geludone
	GELU_BODY1

geludone:
	VZEROUPPER
	RET

// func geluGradMulAVX2(n int, dx, dy, x *float32, c *float32)
TEXT ·geluGradMulAVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dx+8(FP), DI
	MOVQ dy+16(FP), R9
	MOVQ x+24(FP), SI
	GELU_SETUP(c+32(FP))
	TESTQ CX, CX
	JZ    gelugradone

gelugradpairs:
	GELU_GRAD_BODY(0, 32)
	ADDQ $64, BX
	DECQ CX
	JNZ  gelugradpairs

gelugradone:
	TESTQ R10, R10
	JZ    gelugraddone
	GELU_GRAD_BODY1

gelugraddone:
	VZEROUPPER
	RET
