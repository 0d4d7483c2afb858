//go:build !purego

#include "textflag.h"

// func dot4x2(q *float32, qStride int, k *float32, kStride int, n int, out *[8]float32)
//
// The 4×2 block of dot products of query rows q, q+qStride, q+2·qStride,
// q+3·qStride with key rows k, k+kStride (strides in bytes), each n
// float32 long, n a positive multiple of 8: out[2i+j] = q_i · k_j.
// AVX2 + FMA: eight 8-lane accumulators, one per dot product, summed at
// the end lane by lane in a fixed order.
TEXT ·dot4x2(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ qStride+8(FP), R8
	MOVQ k+16(FP), DI
	MOVQ kStride+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ out+40(FP), DX
	LEAQ (SI)(R8*1), R10
	LEAQ (R10)(R8*1), R11
	LEAQ (R11)(R8*1), R12
	LEAQ (DI)(R9*1), R13
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ AX, AX

loop:
	VMOVUPS (DI)(AX*4), Y8
	VMOVUPS (R13)(AX*4), Y9
	VMOVUPS (SI)(AX*4), Y10
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y1
	VMOVUPS (R10)(AX*4), Y11
	VFMADD231PS Y8, Y11, Y2
	VFMADD231PS Y9, Y11, Y3
	VMOVUPS (R11)(AX*4), Y12
	VFMADD231PS Y8, Y12, Y4
	VFMADD231PS Y9, Y12, Y5
	VMOVUPS (R12)(AX*4), Y13
	VFMADD231PS Y8, Y13, Y6
	VFMADD231PS Y9, Y13, Y7
	ADDQ $8, AX
	CMPQ AX, CX
	JLT  loop

	// Horizontal sums: high half + low half, then two pairwise adds.
#define HSUM(Y, X, OFF) \
	VEXTRACTF128 $1, Y, X15 \
	VADDPS       X15, X, X  \
	VHADDPS      X, X, X    \
	VHADDPS      X, X, X    \
	VMOVSS       X, OFF(DX)

	HSUM(Y0, X0, 0)
	HSUM(Y1, X1, 4)
	HSUM(Y2, X2, 8)
	HSUM(Y3, X3, 12)
	HSUM(Y4, X4, 16)
	HSUM(Y5, X5, 20)
	HSUM(Y6, X6, 24)
	HSUM(Y7, X7, 28)
	VZEROUPPER
	RET
