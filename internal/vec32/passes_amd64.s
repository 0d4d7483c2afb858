//go:build !purego

// The reductions and elementwise passes of vec32 (reduce.go, columns.go,
// elementwise.go) with AVX2, 8 floats a step; n is always a positive
// multiple of 8. Each loop performs the Go loop's operations in the Go
// loop's order, lane by lane: VCVTPS2PD, VCVTPD2PS and every arithmetic
// instruction used here round exactly as Go's conversions and float32 or
// float64 operators do (round to nearest even), and nothing is fused.
// The Go loops are the definition; the tests compare the two bit for bit.

#include "textflag.h"

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

// func addProductsTo(n int, prod, sum *float64, x, y *float32)
// prod[j] += x[j]*y[j] (the product exact); sum[j] += x[j].
TEXT ·addProductsTo(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ prod+8(FP), DI
	MOVQ sum+16(FP), DX
	MOVQ x+24(FP), SI
	MOVQ y+32(FP), R8
	SHRQ $3, CX

addprodloop:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD 16(SI), Y1
	VCVTPS2PD (R8), Y2
	VCVTPS2PD 16(R8), Y3
	VMULPD    Y0, Y2, Y2
	VMULPD    Y1, Y3, Y3
	VADDPD    (DI), Y2, Y2
	VADDPD    32(DI), Y3, Y3
	VMOVUPD   Y2, (DI)
	VMOVUPD   Y3, 32(DI)
	VADDPD    (DX), Y0, Y0
	VADDPD    32(DX), Y1, Y1
	VMOVUPD   Y0, (DX)
	VMOVUPD   Y1, 32(DX)
	ADDQ      $32, SI
	ADDQ      $32, R8
	ADDQ      $64, DI
	ADDQ      $64, DX
	DECQ      CX
	JNZ       addprodloop
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

// GELU (gelu.go), 8 lanes at once. The table lookups are gathers of
// coefficient pairs (8 bytes: the polynomials are 6 floats, 24 bytes, so
// pair k of interval i is 8-byte element 3i+k), four lanes a gather: on
// this project's AMD CPUs a gather costs about one load per element, and
// pairs halve the elements. The indices go in the order 0,1,4,5 | 2,3,6,7
// (VPERMQ) so that VSHUFPS, which works within 128-bit halves, deals the
// pairs out into lanes 0-7 in order.

// geluconst: one YMM each of the abs mask, 64, 0.5, 1/64 and geluLimit.
DATA geluconst<>+0(SB)/4, $0x7fffffff
DATA geluconst<>+4(SB)/4, $0x7fffffff
DATA geluconst<>+8(SB)/4, $0x7fffffff
DATA geluconst<>+12(SB)/4, $0x7fffffff
DATA geluconst<>+16(SB)/4, $0x7fffffff
DATA geluconst<>+20(SB)/4, $0x7fffffff
DATA geluconst<>+24(SB)/4, $0x7fffffff
DATA geluconst<>+28(SB)/4, $0x7fffffff
DATA geluconst<>+32(SB)/4, $0x42800000
DATA geluconst<>+36(SB)/4, $0x42800000
DATA geluconst<>+40(SB)/4, $0x42800000
DATA geluconst<>+44(SB)/4, $0x42800000
DATA geluconst<>+48(SB)/4, $0x42800000
DATA geluconst<>+52(SB)/4, $0x42800000
DATA geluconst<>+56(SB)/4, $0x42800000
DATA geluconst<>+60(SB)/4, $0x42800000
DATA geluconst<>+64(SB)/4, $0x3f000000
DATA geluconst<>+68(SB)/4, $0x3f000000
DATA geluconst<>+72(SB)/4, $0x3f000000
DATA geluconst<>+76(SB)/4, $0x3f000000
DATA geluconst<>+80(SB)/4, $0x3f000000
DATA geluconst<>+84(SB)/4, $0x3f000000
DATA geluconst<>+88(SB)/4, $0x3f000000
DATA geluconst<>+92(SB)/4, $0x3f000000
DATA geluconst<>+96(SB)/4, $0x3c800000
DATA geluconst<>+100(SB)/4, $0x3c800000
DATA geluconst<>+104(SB)/4, $0x3c800000
DATA geluconst<>+108(SB)/4, $0x3c800000
DATA geluconst<>+112(SB)/4, $0x3c800000
DATA geluconst<>+116(SB)/4, $0x3c800000
DATA geluconst<>+120(SB)/4, $0x3c800000
DATA geluconst<>+124(SB)/4, $0x3c800000
DATA geluconst<>+128(SB)/4, $0x41600000
DATA geluconst<>+132(SB)/4, $0x41600000
DATA geluconst<>+136(SB)/4, $0x41600000
DATA geluconst<>+140(SB)/4, $0x41600000
DATA geluconst<>+144(SB)/4, $0x41600000
DATA geluconst<>+148(SB)/4, $0x41600000
DATA geluconst<>+152(SB)/4, $0x41600000
DATA geluconst<>+156(SB)/4, $0x41600000
GLOBL geluconst<>(SB), RODATA|NOPTR, $160

// INTERVAL, for x in Y0: leaves in Y2 the lanes where |x| < geluLimit
// (all ones; false for NaN), in Y4 the offset h = |x| - i/64 from the
// interval's centre, and the pair indices 3i (0 out of range) for lanes
// 0,1,4,5 in X5 and 2,3,6,7 in X3. Y9 must hold 0 and Y10 1.
#define INTERVAL \
	VANDPS       geluconst<>+0(SB), Y0, Y1   \
	VCMPPS       $0x11, geluconst<>+128(SB), Y1, Y2 \
	VMULPS       geluconst<>+32(SB), Y1, Y3  \
	VADDPS       geluconst<>+64(SB), Y3, Y3  \
	VCVTTPS2DQ   Y3, Y3                      \
	VPAND        Y2, Y3, Y3                  \
	VCVTDQ2PS    Y3, Y4                      \
	VMULPS       geluconst<>+96(SB), Y4, Y4  \
	VSUBPS       Y4, Y1, Y4                  \
	VPSLLD       $1, Y3, Y5                  \
	VPADDD       Y3, Y5, Y5                  \
	VPERMQ       $0xd8, Y5, Y5               \
	VEXTRACTI128 $1, Y5, X3

// GATHER_PAIR loads coefficients 2k and 2k+1 of the lanes' polynomials
// from table into even and odd (through Y7, Y8 and Y1).
#define GATHER_PAIR(k, table, even, odd) \
	VPCMPEQD   Y7, Y7, Y7                   \
	VGATHERDPD Y7, (k*8)(table)(X5*8), Y8   \
	VPCMPEQD   Y7, Y7, Y7                   \
	VGATHERDPD Y7, (k*8)(table)(X3*8), Y1   \
	VSHUFPS    $0x88, Y1, Y8, even          \
	VSHUFPS    $0xdd, Y1, Y8, odd

// HORNER_STEP: p = p*h + c (not fused).
#define HORNER_STEP(c, p) \
	VMULPS Y4, p, p \
	VADDPS c, p, p

// HORNER evaluates the degree-5 polynomial of table at h into p,
// using Y12 and Y13.
#define HORNER(table, p) \
	GATHER_PAIR(2, table, Y12, p) \
	HORNER_STEP(Y12, p)           \
	GATHER_PAIR(1, table, Y12, Y13) \
	HORNER_STEP(Y13, p)           \
	HORNER_STEP(Y12, p)           \
	GATHER_PAIR(0, table, Y12, Y13) \
	HORNER_STEP(Y13, p)           \
	HORNER_STEP(Y12, p)

// func geluAVX2(n int, y, x *float32, upperTail *float32)
TEXT ·geluAVX2(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ y+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ upperTail+24(FP), DX
	VXORPS    Y9, Y9, Y9
	VPCMPEQD  Y10, Y10, Y10
	VPSRLD    $25, Y10, Y10
	VPSLLD    $23, Y10, Y10         // 1.0 = 0x3f800000
	XORQ BX, BX
	SHRQ $3, CX

geluloop:
	VMOVUPS (SI)(BX*1), Y0
	INTERVAL
	HORNER(DX, Y6)                  // q = Q(|x|)
	VSUBPS    Y6, Y10, Y7           // 1 - q
	VCMPPS    $0x11, Y9, Y0, Y8     // x < 0
	VBLENDVPS Y8, Y6, Y7, Y7        // x < 0 ? q : 1 - q
	VMULPS    Y7, Y0, Y7            // x times that
	VCMPPS    $0x1e, Y9, Y0, Y8     // x > 0
	VMULPS    Y9, Y0, Y3            // x*0
	VBLENDVPS Y8, Y0, Y3, Y3        // out of range: x > 0 ? x : x*0
	VBLENDVPS Y2, Y7, Y3, Y7
	VMOVUPS   Y7, (DI)(BX*1)
	ADDQ      $32, BX
	DECQ      CX
	JNZ       geluloop
	VZEROUPPER
	RET

// func geluGradMulAVX2(n int, dx, dy, x *float32, upperTail, density *float32)
TEXT ·geluGradMulAVX2(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ dx+8(FP), DI
	MOVQ dy+16(FP), R9
	MOVQ x+24(FP), SI
	MOVQ upperTail+32(FP), DX
	MOVQ density+40(FP), R8
	VXORPS    Y9, Y9, Y9
	VPCMPEQD  Y10, Y10, Y10
	VPSRLD    $25, Y10, Y10
	VPSLLD    $23, Y10, Y10         // 1.0 = 0x3f800000
	XORQ BX, BX
	SHRQ $3, CX

gelugradloop:
	VMOVUPS (SI)(BX*1), Y0
	INTERVAL
	HORNER(DX, Y6)                  // Q(|x|)
	HORNER(R8, Y11)                 // φ(|x|)
	VSUBPS    Y6, Y10, Y3           // 1 - Q
	VCMPPS    $0x1d, Y9, Y0, Y8     // x >= 0
	VBLENDVPS Y8, Y3, Y6, Y6        // Φ(x) = x >= 0 ? 1 - Q : Q
	VMULPS    Y11, Y0, Y11          // x φ(x)
	VADDPS    Y11, Y6, Y6           // Φ(x) + x φ(x)
	VCMPPS    $0x1e, Y9, Y0, Y8     // x > 0
	VBLENDVPS Y8, Y10, Y0, Y3       // out of range: x > 0 ? 1 : x ...
	VCMPPS    $0x11, Y9, Y0, Y8     // x < 0
	VBLENDVPS Y8, Y9, Y3, Y3        // ... x < 0 ? 0 : that (NaN stays x)
	VBLENDVPS Y2, Y6, Y3, Y6
	VMULPS    (R9)(BX*1), Y6, Y6    // dy times the derivative
	VMOVUPS   Y6, (DI)(BX*1)
	ADDQ      $32, BX
	DECQ      CX
	JNZ       gelugradloop
	VZEROUPPER
	RET
