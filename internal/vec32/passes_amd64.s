//go:build !purego

// The reductions and elementwise passes of vec32 (reduce.go, columns.go,
// elementwise.go) with AVX2, 8 floats a step; n is always a positive
// multiple of 8. Each loop performs the Go loop's operations in the Go
// loop's order, lane by lane: VCVTPS2PD, VCVTPD2PS and every arithmetic
// instruction used here round exactly as Go's conversions and float32 or
// float64 operators do (round to nearest even), and nothing is fused.
// The Go loops are the definition; the tests compare the two bit for bit.

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

// func lnBackwardLanes(n int, dy, gamma, xhat *float32, l1, l2 *lanes)
// g = dy[j]*gamma[j] (exact); l1[j%8] += g; l2[j%8] += g*xhat[j].
TEXT ·lnBackwardLanes(SB), NOSPLIT, $0-48
	MOVQ    n+0(FP), CX
	MOVQ    dy+8(FP), SI
	MOVQ    gamma+16(FP), DI
	MOVQ    xhat+24(FP), DX
	MOVQ    l1+32(FP), AX
	MOVQ    l2+40(FP), BX
	VMOVUPD (AX), Y0
	VMOVUPD 32(AX), Y1
	VMOVUPD (BX), Y2
	VMOVUPD 32(BX), Y3
	SHRQ    $3, CX

lnbwdloop:
	VCVTPS2PD (SI), Y4
	VCVTPS2PD 16(SI), Y5
	VCVTPS2PD (DI), Y6
	VCVTPS2PD 16(DI), Y7
	VMULPD    Y6, Y4, Y4
	VMULPD    Y7, Y5, Y5
	VADDPD    Y4, Y0, Y0
	VADDPD    Y5, Y1, Y1
	VCVTPS2PD (DX), Y8
	VCVTPS2PD 16(DX), Y9
	VMULPD    Y8, Y4, Y4
	VMULPD    Y9, Y5, Y5
	VADDPD    Y4, Y2, Y2
	VADDPD    Y5, Y3, Y3
	ADDQ      $32, SI
	ADDQ      $32, DI
	ADDQ      $32, DX
	DECQ      CX
	JNZ       lnbwdloop
	VMOVUPD   Y0, (AX)
	VMOVUPD   Y1, 32(AX)
	VMOVUPD   Y2, (BX)
	VMOVUPD   Y3, 32(BX)
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

// func addProductsTo(n, rows, stride int, prod, sum *float64, x, y *float32)
// For 16 columns at a time (n a multiple of 16), over rows r in order:
// prod[j] += x[j]*y[j] (the product exact), sum[j] += x[j], with x and y
// advancing stride floats a row; the 16 columns' prod and sum stay in
// Y0-Y7 across the rows.
TEXT ·addProductsTo(SB), NOSPLIT, $0-56
	MOVQ n+0(FP), CX
	MOVQ stride+16(FP), R11
	SHLQ $2, R11                // stride in bytes
	MOVQ prod+24(FP), DI
	MOVQ sum+32(FP), DX
	MOVQ x+40(FP), SI
	MOVQ y+48(FP), R8
	SHRQ $4, CX

addprodcols:
	VMOVUPD (DI), Y0
	VMOVUPD 32(DI), Y1
	VMOVUPD 64(DI), Y2
	VMOVUPD 96(DI), Y3
	VMOVUPD (DX), Y4
	VMOVUPD 32(DX), Y5
	VMOVUPD 64(DX), Y6
	VMOVUPD 96(DX), Y7
	MOVQ    SI, R12
	MOVQ    R8, R13
	MOVQ    rows+8(FP), BX

addprodrows:
	VCVTPS2PD (R12), Y8
	VCVTPS2PD 16(R12), Y9
	VCVTPS2PD (R13), Y10
	VCVTPS2PD 16(R13), Y11
	VMULPD    Y8, Y10, Y10
	VMULPD    Y9, Y11, Y11
	VADDPD    Y10, Y0, Y0
	VADDPD    Y11, Y1, Y1
	VADDPD    Y8, Y4, Y4
	VADDPD    Y9, Y5, Y5
	VCVTPS2PD 32(R12), Y8
	VCVTPS2PD 48(R12), Y9
	VCVTPS2PD 32(R13), Y10
	VCVTPS2PD 48(R13), Y11
	VMULPD    Y8, Y10, Y10
	VMULPD    Y9, Y11, Y11
	VADDPD    Y10, Y2, Y2
	VADDPD    Y11, Y3, Y3
	VADDPD    Y8, Y6, Y6
	VADDPD    Y9, Y7, Y7
	ADDQ      R11, R12
	ADDQ      R11, R13
	DECQ      BX
	JNZ       addprodrows

	VMOVUPD Y0, (DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	VMOVUPD Y4, (DX)
	VMOVUPD Y5, 32(DX)
	VMOVUPD Y6, 64(DX)
	VMOVUPD Y7, 96(DX)
	ADDQ    $128, DI
	ADDQ    $128, DX
	ADDQ    $64, SI
	ADDQ    $64, R8
	DECQ    CX
	JNZ     addprodcols
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

// func layerNormBackwardApply(n int, dx, dy, xhat, gamma *float32, meanG, meanGX, rstd float64)
// g = dy[j]*gamma[j] (exact); dx[j] = float32(rstd * ((g - meanG) - xhat[j]*meanGX)).
// dy is read before dx is written, so dx may alias dy.
TEXT ·layerNormBackwardApply(SB), NOSPLIT, $0-64
	MOVQ         n+0(FP), CX
	MOVQ         dx+8(FP), DI
	MOVQ         dy+16(FP), SI
	MOVQ         xhat+24(FP), DX
	MOVQ         gamma+32(FP), R8
	VBROADCASTSD meanG+40(FP), Y13
	VBROADCASTSD meanGX+48(FP), Y14
	VBROADCASTSD rstd+56(FP), Y15
	XORQ         BX, BX
	SHRQ         $3, CX

lnbwdapplyloop:
	VCVTPS2PD   (SI)(BX*1), Y0
	VCVTPS2PD   16(SI)(BX*1), Y1
	VCVTPS2PD   (R8)(BX*1), Y2
	VCVTPS2PD   16(R8)(BX*1), Y3
	VMULPD      Y2, Y0, Y0
	VMULPD      Y3, Y1, Y1
	VSUBPD      Y13, Y0, Y0
	VSUBPD      Y13, Y1, Y1
	VCVTPS2PD   (DX)(BX*1), Y4
	VCVTPS2PD   16(DX)(BX*1), Y5
	VMULPD      Y14, Y4, Y4
	VMULPD      Y14, Y5, Y5
	VSUBPD      Y4, Y0, Y0
	VSUBPD      Y5, Y1, Y1
	VMULPD      Y15, Y0, Y0
	VMULPD      Y15, Y1, Y1
	VCVTPD2PSY  Y0, X0
	VCVTPD2PSY  Y1, X1
	VINSERTF128 $1, X1, Y0, Y0
	VMOVUPS     Y0, (DI)(BX*1)
	ADDQ        $32, BX
	DECQ        CX
	JNZ         lnbwdapplyloop
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

// GELU and its derivative (gelu.go), 8 lanes at once, with the same
// operations in the same order as geluTail, GELU and GELUGrad. DX holds
// &geluC (offsets in gelu_tables_amd64.h), Y14 the mask of |x| and Y15 1.0
// (whose bits, 0x3f800000, also make 2^-n). The piece index j is left in
// the low 3 bits of Y3, all VPERMPS looks at.

// GELU_COEF loads coefficient k of poly for each lane's piece into r.
#define GELU_COEF(poly, k, r) VPERMPS poly+32*(k)(DX), Y3, r

// GELU_HORNER_STEP: v = fma(v, h, coefficient k) with v in Y9, h in Y4.
#define GELU_HORNER_STEP(poly, k) \
	GELU_COEF(poly, k, Y7) \
	VFMADD213PS Y7, Y4, Y9

// GELU_TAIL leaves geluTail(|x|, poly) for x in Y0: v in Y11, w in Y8
// and 2^-n in Y6 (and r in Y9, P's constant's high part in Y12, for vLo),
// and in Y2 the lanes with |x| < limit or NaN; it uses Y1-Y12.
#define GELU_TAIL(poly) \
	VANDPS      Y14, Y0, Y1               \ // a = |x|
	VCMPPS      $0x19, GELU_LIMIT(DX), Y1, Y2 \ // !(a >= limit): in range or NaN
	VADDPS      Y15, Y1, Y3               \
	VPSRLD      $22, Y3, Y3               \ // j = bits(a + 1) >> 22 (& 7)
	VPERMPS     GELU_CENTRE(DX), Y3, Y4   \
	VSUBPS      Y4, Y1, Y4                \ // h = a - centre
	GELU_COEF(poly, GELU_DEGREE, Y9)      \
	GELU_HORNER_STEP(poly, 7)           \
	GELU_HORNER_STEP(poly, 6)           \
	GELU_HORNER_STEP(poly, 5)           \
	GELU_HORNER_STEP(poly, 4)           \
	GELU_HORNER_STEP(poly, 3)           \
	GELU_HORNER_STEP(poly, 2)           \
	GELU_HORNER_STEP(poly, 1)           \
	GELU_COEF(poly, GELU_DEGREE+1, Y7)    \
	VFMADD213PS Y7, Y4, Y9                \ // r, with the constant's low part
	GELU_COEF(poly, 0, Y12)               \
	VADDPS      Y12, Y9, Y11              \ // v = r + the constant's high part
	VMULPS      Y1, Y1, Y4                \ // hi = a*a
	VMOVAPS     Y1, Y5                    \
	VFMSUB213PS Y4, Y1, Y5                \ // lo = a*a - hi, exact
	VMULPS      GELU_HALF_LOG2E(DX), Y4, Y6 \
	VROUNDPS    $0, Y6, Y6                \ // n, to nearest even
	VFMADD231PS GELU_NEG_TWO_LN2_HI(DX), Y6, Y4 \ // t = hi - 2n ln2hi
	VFMADD231PS GELU_NEG_TWO_LN2_LO(DX), Y6, Y4 \ // t -= 2n ln2lo
	VADDPS      Y5, Y4, Y4                \ // t += lo
	VMULPS      Y4, Y4, Y5                \ // t2
	VMULPS      Y5, Y5, Y7                \ // t4
	VMOVUPS     GELU_EXP+32*1(DX), Y8     \
	VFMADD213PS GELU_EXP+32*0(DX), Y4, Y8 \ // e1 t + e0
	VMOVUPS     GELU_EXP+32*3(DX), Y10    \
	VFMADD213PS GELU_EXP+32*2(DX), Y4, Y10 \ // e3 t + e2
	VFMADD213PS Y8, Y5, Y10               \ // that t2 + (e1 t + e0)
	VMOVUPS     GELU_EXP+32*4(DX), Y8     \
	VFMADD213PS Y10, Y7, Y8               \ // g = e4 t4 + that
	VMULPS      GELU_NEG_HALF(DX), Y4, Y10 \
	VFMADD213PS Y10, Y5, Y8               \ // w = t2 g - t/2 = exp(-t/2) - 1
	VCVTPS2DQ   Y6, Y6                    \
	VPSLLD      $23, Y6, Y6               \
	VPSUBD      Y6, Y15, Y6                 // 2^-n

// GELU_SETUP loads &geluC into DX, the |x| mask into Y14 and 1.0 into Y15.
#define GELU_SETUP(c) \
	MOVQ     c, DX                  \
	VPCMPEQD Y14, Y14, Y14          \
	VPSRLD   $1, Y14, Y14           \
	VMOVUPS  GELU_ONE(DX), Y15

// func geluAVX2(n int, y, x *float32, c *float32)
// y[j] = x[j] M for x[j] < 0 (sign bit set), x[j] - x[j] M otherwise, and
// x[j] itself where |x[j]| >= limit (M = 0 there, but +Inf M is NaN).
TEXT ·geluAVX2(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ y+8(FP), DI
	MOVQ x+16(FP), SI
	GELU_SETUP(c+24(FP))
	XORQ BX, BX
	SHRQ $3, CX

geluloop:
	VMOVUPS   (SI)(BX*1), Y0
	GELU_TAIL(GELU_R)
	VSUBPS       Y11, Y12, Y12
	VADDPS       Y9, Y12, Y13     // vLo = (high part - v) + r
	VFMADD213PS  Y13, Y11, Y8     // v w + vLo
	VADDPS       Y8, Y11, Y5
	VMULPS       Y6, Y5, Y5
	VANDPS       Y2, Y5, Y5       // M, 0 out of range
	VMULPS       Y0, Y5, Y6       // x M
	VMOVAPS      Y0, Y7
	VFNMADD231PS Y5, Y0, Y7       // x - x M
	VBLENDVPS    Y2, Y7, Y0, Y7   // in range (or NaN) ? that : x
	VBLENDVPS    Y0, Y6, Y7, Y6   // x's sign ? x M : that
	VMOVUPS      Y6, (DI)(BX*1)
	ADDQ      $32, BX
	DECQ      CX
	JNZ       geluloop
	VZEROUPPER
	RET

// func geluGradMulAVX2(n int, dx, dy, x *float32, c *float32)
// dx[j] = dy[j] times M for x[j] < 0 (sign bit set), 1 - M otherwise.
TEXT ·geluGradMulAVX2(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dx+8(FP), DI
	MOVQ dy+16(FP), R9
	MOVQ x+24(FP), SI
	GELU_SETUP(c+32(FP))
	XORQ BX, BX
	SHRQ $3, CX

gelugradloop:
	VMOVUPS   (SI)(BX*1), Y0
	GELU_TAIL(GELU_D)
	VFMADD231PS  Y11, Y8, Y11     // v + v w
	VMULPS       Y6, Y11, Y5
	VANDPS       Y2, Y5, Y5       // M, 0 out of range
	VSUBPS    Y5, Y15, Y6     // 1 - M
	VBLENDVPS Y0, Y5, Y6, Y6  // x's sign ? M : 1 - M
	VMULPS    (R9)(BX*1), Y6, Y6
	VMOVUPS   Y6, (DI)(BX*1)
	ADDQ      $32, BX
	DECQ      CX
	JNZ       gelugradloop
	VZEROUPPER
	RET
