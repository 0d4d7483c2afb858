//go:build !purego

// The loops of LayerNormBackwardRows (lnbackward.go) with AVX2, 8 floats a
// step (n a positive multiple of 8): the first sweep (lnBackwardColumns,
// for one row, lnBackwardColumns2 for two), which adds a row's terms of
// its two sums to their lanes (lanes 0-3 in one YMM accumulator, 4-7 in
// another, as passes_amd64.s's reductions) and its terms of the column
// sums to their float64 sums in memory; the second (lnBackwardApply); and
// accumulate, which adds the blocks' column sums. Each does the same
// operations in the same order as its Go loop, lane by lane, nothing
// fused; the tests compare the two bit for bit.

#include "textflag.h"

// func lnBackwardColumns(n int, dy *float32, gamma *float64, xhat *float32, l1, l2 *lanes, prod, sum *float64)
// g = dy[j]*gamma[j] (exact); l1[j%8] += g; l2[j%8] += g*xhat[j];
// prod[j] += dy[j]*xhat[j] (exact); sum[j] += dy[j].
TEXT ·lnBackwardColumns(SB), NOSPLIT, $0-64
	MOVQ    n+0(FP), CX
	MOVQ    dy+8(FP), SI
	MOVQ    gamma+16(FP), DI
	MOVQ    xhat+24(FP), DX
	MOVQ    l1+32(FP), AX
	MOVQ    l2+40(FP), BX
	MOVQ    prod+48(FP), R8
	MOVQ    sum+56(FP), R9
	VMOVUPD (AX), Y0
	VMOVUPD 32(AX), Y1
	VMOVUPD (BX), Y2
	VMOVUPD 32(BX), Y3
	SHRQ    $3, CX

lnbwdcolsloop:
	VCVTPS2PD (SI), Y4          // dy
	VCVTPS2PD 16(SI), Y5
	VCVTPS2PD (DX), Y8          // xhat
	VCVTPS2PD 16(DX), Y9
	VADDPD    (R9), Y4, Y10     // sum += dy
	VADDPD    32(R9), Y5, Y11
	VMOVUPD   Y10, (R9)
	VMOVUPD   Y11, 32(R9)
	VMULPD    Y8, Y4, Y10       // prod += dy*xhat
	VMULPD    Y9, Y5, Y11
	VADDPD    (R8), Y10, Y10
	VADDPD    32(R8), Y11, Y11
	VMOVUPD   Y10, (R8)
	VMOVUPD   Y11, 32(R8)
	VMULPD    (DI), Y4, Y4      // g = dy*gamma
	VMULPD    32(DI), Y5, Y5
	VADDPD    Y4, Y0, Y0        // l1 += g
	VADDPD    Y5, Y1, Y1
	VMULPD    Y8, Y4, Y4        // l2 += g*xhat
	VMULPD    Y9, Y5, Y5
	VADDPD    Y4, Y2, Y2
	VADDPD    Y5, Y3, Y3
	ADDQ      $32, SI
	ADDQ      $64, DI
	ADDQ      $32, DX
	ADDQ      $64, R8
	ADDQ      $64, R9
	DECQ      CX
	JNZ       lnbwdcolsloop
	VMOVUPD   Y0, (AX)
	VMOVUPD   Y1, 32(AX)
	VMOVUPD   Y2, (BX)
	VMOVUPD   Y3, 32(BX)
	VZEROUPPER
	RET

// func lnBackwardApply(n int, dx, dy, xhat *float32, gamma *float64, meanG, meanGX, rstd float64)
// g = dy[j]*gamma[j] (exact); dx[j] = float32(rstd * ((g - meanG) - xhat[j]*meanGX)):
// dy is read before dx is written, so dx may alias dy.
TEXT ·lnBackwardApply(SB), NOSPLIT, $0-64
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

lnbwdapply64loop:
	VCVTPS2PD   (SI)(BX*1), Y0
	VCVTPS2PD   16(SI)(BX*1), Y1
	VMULPD      (R8)(BX*2), Y0, Y0
	VMULPD      32(R8)(BX*2), Y1, Y1
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
	JNZ         lnbwdapply64loop
	VZEROUPPER
	RET

// func lnBackwardColumns2(n, stride int, dy *float32, gamma *float64, xhat *float32, l *[2]rowLanes, prod, sum *float64)
// lnBackwardColumns for two rows, r at dy and xhat and r+1 stride floats
// on, with l = {l1, l2 of row r, l1, l2 of row r+1}: 8 columns at a time,
// row r's terms then row r+1's, so each column's sums take them in row
// order as two calls would, loading and storing the sums once for both
// rows (the stores, one 256-bit store a cycle, are what limits the
// one-row loop). Y0-Y3 hold row r's lanes, Y4-Y7 row r+1's, Y8-Y11 the 8
// columns' prod (Y8, Y9) and sum (Y10, Y11).
TEXT ·lnBackwardColumns2(SB), NOSPLIT, $0-64
	MOVQ    n+0(FP), CX
	MOVQ    stride+8(FP), R10
	SHLQ    $2, R10                // stride in bytes
	MOVQ    dy+16(FP), SI
	MOVQ    gamma+24(FP), DI
	MOVQ    xhat+32(FP), DX
	MOVQ    l+40(FP), AX
	MOVQ    prod+48(FP), R8
	MOVQ    sum+56(FP), R9
	VMOVUPD (AX), Y0
	VMOVUPD 32(AX), Y1
	VMOVUPD 64(AX), Y2
	VMOVUPD 96(AX), Y3
	VMOVUPD 128(AX), Y4
	VMOVUPD 160(AX), Y5
	VMOVUPD 192(AX), Y6
	VMOVUPD 224(AX), Y7
	SHRQ    $3, CX

lnbwdcols2loop:
	VMOVUPD   (R8), Y8
	VMOVUPD   32(R8), Y9
	VMOVUPD   (R9), Y10
	VMOVUPD   32(R9), Y11
	// row r: lanes Y0-Y3
	VCVTPS2PD (SI), Y12
	VCVTPS2PD (DX), Y13
	VADDPD    Y12, Y10, Y10
	VMULPD    Y13, Y12, Y14
	VADDPD    Y14, Y8, Y8
	VMULPD    (DI), Y12, Y12
	VADDPD    Y12, Y0, Y0
	VMULPD    Y13, Y12, Y12
	VADDPD    Y12, Y2, Y2
	VCVTPS2PD 16(SI), Y12
	VCVTPS2PD 16(DX), Y13
	VADDPD    Y12, Y11, Y11
	VMULPD    Y13, Y12, Y14
	VADDPD    Y14, Y9, Y9
	VMULPD    32(DI), Y12, Y12
	VADDPD    Y12, Y1, Y1
	VMULPD    Y13, Y12, Y12
	VADDPD    Y12, Y3, Y3
	// row r+1: lanes Y4-Y7
	VCVTPS2PD (SI)(R10*1), Y12
	VCVTPS2PD (DX)(R10*1), Y13
	VADDPD    Y12, Y10, Y10
	VMULPD    Y13, Y12, Y14
	VADDPD    Y14, Y8, Y8
	VMULPD    (DI), Y12, Y12
	VADDPD    Y12, Y4, Y4
	VMULPD    Y13, Y12, Y12
	VADDPD    Y12, Y6, Y6
	VCVTPS2PD 16(SI)(R10*1), Y12
	VCVTPS2PD 16(DX)(R10*1), Y13
	VADDPD    Y12, Y11, Y11
	VMULPD    Y13, Y12, Y14
	VADDPD    Y14, Y9, Y9
	VMULPD    32(DI), Y12, Y12
	VADDPD    Y12, Y5, Y5
	VMULPD    Y13, Y12, Y12
	VADDPD    Y12, Y7, Y7
	VMOVUPD   Y8, (R8)
	VMOVUPD   Y9, 32(R8)
	VMOVUPD   Y10, (R9)
	VMOVUPD   Y11, 32(R9)
	ADDQ      $32, SI
	ADDQ      $64, DI
	ADDQ      $32, DX
	ADDQ      $64, R8
	ADDQ      $64, R9
	DECQ      CX
	JNZ       lnbwdcols2loop
	VMOVUPD   Y0, (AX)
	VMOVUPD   Y1, 32(AX)
	VMOVUPD   Y2, 64(AX)
	VMOVUPD   Y3, 96(AX)
	VMOVUPD   Y4, 128(AX)
	VMOVUPD   Y5, 160(AX)
	VMOVUPD   Y6, 192(AX)
	VMOVUPD   Y7, 224(AX)
	VZEROUPPER
	RET

// func accumulate(n int, dst, x *float64)
// dst[j] += x[j], 8 at a time.
TEXT ·accumulate(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	SHRQ $3, CX

accumulateloop:
	VMOVUPD (DI), Y0
	VMOVUPD 32(DI), Y1
	VADDPD  (SI), Y0, Y0
	VADDPD  32(SI), Y1, Y1
	VMOVUPD Y0, (DI)
	VMOVUPD Y1, 32(DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     accumulateloop
	VZEROUPPER
	RET
