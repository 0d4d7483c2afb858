//go:build !purego

#include "textflag.h"
#include "gelu_tables_amd64.h"

// The body of GELU (gelu.go, geluBody): for |x| < 4, where nearly every
// input of the engine's GELUs falls, Q(|x|) = 1 - Φ(|x|) is one degree-7
// polynomial on each of 8 pieces of width 1/2, with no exponential:
//
//	j = int(2a), a = |x|      (the piece; 2a is exact, the conversion truncates)
//	h = a - centre[j]         (exact: Sterbenz, or centre 0)
//	q = Horner's rule over body[k][j], k = 7 down to 0
//	y = -a q + (x, or 0 for x < 0)   (one FMA)
//
// with the same operations in the same order as geluBody; the derivative
// (geluBodyGradMulAVX2, GELUGrad) the same with E = Q - a φ for Q, and dx =
// dy (E for x < 0, 1 - E otherwise). VPERMPS picks
// each lane's coefficient from a row of 8 (one a piece) straight from
// memory, one instruction a coefficient. A vector costs about 25
// instructions, against about 70 for the whole-range formula
// (passes_amd64.s), whose exponential and split coefficients the body
// does not need.
//
// geluBodyAVX2 stores the body's y for every vector of a block of x
// (four vectors at a time, then one), and copies each vector with a lane
// out of the body (|x| >= 4, or NaN) to a buffer, with its offset, before
// its y overwrites x (y may alias x). The caller (GELUs) runs the
// whole-range formula over that buffer, packed, at its full rate, and
// geluScatterAVX2 stores its results to those lanes. On one thread of a
// 2-vCPU AMD EPYC (Zen 5, 2026-12-02; BenchmarkGELUsSpread) GELUs took
// 0.30 ns an element on normal inputs of spread 1 against 0.82 for the
// whole-range formula alone, 0.68 at spread 2, and 1.1-1.3 at spreads 3
// and 5, where most vectors need both formulas. A lane is out when int(2a) is not 0-7: at least 8, or the
// integer indefinite 0x80000000 that the conversion gives for NaN and
// beyond 2^31; there the piece index picks a garbage polynomial (VPERMPS
// reads only its low 3 bits) whose result is overwritten.
//
// Registers: DX &geluC (offsets in gelu_tables_amd64.h), SI x, DI y, CX
// the bytes of x, BX the offset; R9 the buffer of vectors, R11 their
// offsets (int32), R10 their count; Y15 the |x| mask, Y14 zero, Y13 the
// bits outside a piece index (0xfffffff8); a vector's J (its piece
// index), H (h, then a) and S (q) are Y0-Y3, Y4-Y7 and Y8-Y11; Y12 is
// scratch.

// BODY_INDEX sets H = a and J = j for x at off(SI)(BX*1).
#define BODY_INDEX(off, J, H)       \
	VANDPS     off(SI)(BX*1), Y15, H \
	VADDPS     H, H, J              \
	VCVTTPS2DQ J, J

// BODY_INDEX4 does BODY_INDEX for the four vectors at 0-96(SI)(BX*1)
// and sets ZF if every lane is in the body (no bits outside 0-7 in any
// J).
#define BODY_INDEX4            \
	BODY_INDEX(0, Y0, Y4)  \
	BODY_INDEX(32, Y1, Y5) \
	BODY_INDEX(64, Y2, Y6) \
	BODY_INDEX(96, Y3, Y7) \
	VPOR   Y1, Y0, Y12     \
	VPOR   Y2, Y12, Y12    \
	VPOR   Y3, Y12, Y12    \
	VPTEST Y13, Y12

// BODY_H sets H = h = a - centre[j] and S = the coefficient of h^7 of
// the polynomial at P (GELU_BODY, Q, or GELU_BODY_GRAD, E).
#define BODY_H(P, J, H, S)                   \
	VPERMPS GELU_BODY_CENTRE(DX), J, Y12 \
	VSUBPS  Y12, H, H                    \
	VPERMPS P+32*GELU_BODY_DEGREE(DX), J, S

// BODY_STEP: S = S h + the coefficient of h^k.
#define BODY_STEP(P, k, J, H, S)        \
	VPERMPS     P+32*(k)(DX), J, Y12 \
	VFMADD213PS Y12, H, S

#define BODY_STEP4(P, k)              \
	BODY_STEP(P, k, Y0, Y4, Y8)   \
	BODY_STEP(P, k, Y1, Y5, Y9)   \
	BODY_STEP(P, k, Y2, Y6, Y10)  \
	BODY_STEP(P, k, Y3, Y7, Y11)

// BODY_POLY4 takes the four vectors' J and H (a) to S = the polynomial at
// P, by Horner's rule with the four chains interleaved.
#define BODY_POLY4(P)           \
	BODY_H(P, Y0, Y4, Y8)   \
	BODY_H(P, Y1, Y5, Y9)   \
	BODY_H(P, Y2, Y6, Y10)  \
	BODY_H(P, Y3, Y7, Y11)  \
	BODY_STEP4(P, 6)        \
	BODY_STEP4(P, 5)        \
	BODY_STEP4(P, 4)        \
	BODY_STEP4(P, 3)        \
	BODY_STEP4(P, 2)        \
	BODY_STEP4(P, 1)        \
	BODY_STEP4(P, 0)

#define BODY_POLY1(P)               \
	BODY_H(P, Y0, Y4, Y8)       \
	BODY_STEP(P, 6, Y0, Y4, Y8) \
	BODY_STEP(P, 5, Y0, Y4, Y8) \
	BODY_STEP(P, 4, Y0, Y4, Y8) \
	BODY_STEP(P, 3, Y0, Y4, Y8) \
	BODY_STEP(P, 2, Y0, Y4, Y8) \
	BODY_STEP(P, 1, Y0, Y4, Y8) \
	BODY_STEP(P, 0, Y0, Y4, Y8)

// BODY_Y sets Y12 = y = -a q + max(0, x) for x at off(SI)(BX*1), q in
// S; H (a) is scratch. MAXPS returns its second source, x, when both are
// zero, so -0 stays -0.
#define BODY_Y(off, H, S)                   \
	VANDPS       off(SI)(BX*1), Y15, H   \
	VMAXPS       off(SI)(BX*1), Y14, Y12 \
	VFNMADD231PS S, H, Y12

// BODY_OUT stores y to off(DI)(BX*1), after reading x there (y may
// alias x).
#define BODY_OUT(off, H, S) \
	BODY_Y(off, H, S)   \
	VMOVUPS Y12, off(DI)(BX*1)

// BODY_SETUP loads the constants into Y13-Y15.
#define BODY_SETUP                 \
	VPCMPEQD Y15, Y15, Y15     \
	VPSRLD   $1, Y15, Y15      \
	VXORPS   Y14, Y14, Y14     \
	VPCMPEQD Y13, Y13, Y13     \
	VPSLLD   $3, Y13, Y13

// BODY_COPY copies the vector at off(from)(BX*1) to the buffer to at
// the collected vectors' next place (R10).
#define BODY_COPY(off, from, to)      \
	VMOVUPS off(from)(BX*1), Y12  \
	MOVQ    R10, AX               \
	SHLQ    $5, AX                \
	VMOVUPS Y12, (to)(AX*1)

// BODY_COLLECT copies the vector at off(SI)(BX*1) and its byte offset to
// the buffers' next place, which it takes (R10 + 1) only if a lane of J
// is out of the body: no branch, and at most one place a vector.
#define BODY_COLLECT(off, J)          \
	BODY_COPY(off, SI, R9)        \
	LEAQ    off(BX), AX           \
	MOVL    AX, (R11)(R10*4)      \
	LEAQ    1(R10), AX            \
	VPTEST  Y13, J                \
	CMOVQNE AX, R10

// func geluBodyAVX2(n int, y, x *float32, c *float32, outX *float32, outAt *int32) int
TEXT ·geluBodyAVX2(SB), NOSPLIT, $0-56
	MOVQ     n+0(FP), CX
	MOVQ     y+8(FP), DI
	MOVQ     x+16(FP), SI
	MOVQ     c+24(FP), DX
	MOVQ     outX+32(FP), R9
	MOVQ     outAt+40(FP), R11
	BODY_SETUP
	SHLQ     $2, CX
	XORQ     BX, BX
	XORQ     R10, R10

body4:
	LEAQ       128(BX), AX
	CMPQ       AX, CX
	JGT        body1
	BODY_INDEX4
	JEQ        body4in // every lane in the body
	BODY_COLLECT(0, Y0)
	BODY_COLLECT(32, Y1)
	BODY_COLLECT(64, Y2)
	BODY_COLLECT(96, Y3)

body4in:
	BODY_POLY4(GELU_BODY)
	BODY_OUT(0, Y4, Y8)
	BODY_OUT(32, Y5, Y9)
	BODY_OUT(64, Y6, Y10)
	BODY_OUT(96, Y7, Y11)
	ADDQ       $128, BX
	JMP        body4

body1:
	CMPQ       BX, CX
	JGE        bodydone
	BODY_INDEX(0, Y0, Y4)
	BODY_COLLECT(0, Y0)
	BODY_POLY1(GELU_BODY)
	BODY_OUT(0, Y4, Y8)
	ADDQ       $32, BX
	JMP        body1

bodydone:
	MOVQ       R10, ret+48(FP)
	VZEROUPPER
	RET

// BODY_GRAD_OUT stores dx = dy g to off(DI)(BX*1), g = E (in S) for x
// < 0 (its sign bit set) and 1 - E otherwise, dy at off(R8)(BX*1), x at
// off(SI)(BX*1); H is scratch. It reads dy before writing dx (dx may
// alias dy).
#define BODY_GRAD_OUT(off, H, S)           \
	VMOVUPS   GELU_ONE(DX), Y12         \
	VSUBPS    S, Y12, Y12               \
	VMOVUPS   off(SI)(BX*1), H          \
	VBLENDVPS H, S, Y12, Y12            \
	VMULPS    off(R8)(BX*1), Y12, Y12   \
	VMOVUPS   Y12, off(DI)(BX*1)

// func geluBodyGradMulAVX2(n int, dx, dy, x *float32, c *float32, outX, outDy *float32, outAt *int32) int
// geluBodyAVX2 for the backward pass: dx = dy GELU'(x), E = Q - a φ in
// place of Q, and the vectors out of the body collected with their dy.
TEXT ·geluBodyGradMulAVX2(SB), NOSPLIT, $0-72
	MOVQ     n+0(FP), CX
	MOVQ     dx+8(FP), DI
	MOVQ     dy+16(FP), R8
	MOVQ     x+24(FP), SI
	MOVQ     c+32(FP), DX
	MOVQ     outX+40(FP), R9
	MOVQ     outDy+48(FP), R12
	MOVQ     outAt+56(FP), R11
	BODY_SETUP
	SHLQ     $2, CX
	XORQ     BX, BX
	XORQ     R10, R10

grad4:
	LEAQ       128(BX), AX
	CMPQ       AX, CX
	JGT        grad1
	BODY_INDEX4
	JEQ        grad4in
	BODY_COPY(0, R8, R12)
	BODY_COLLECT(0, Y0)
	BODY_COPY(32, R8, R12)
	BODY_COLLECT(32, Y1)
	BODY_COPY(64, R8, R12)
	BODY_COLLECT(64, Y2)
	BODY_COPY(96, R8, R12)
	BODY_COLLECT(96, Y3)

grad4in:
	BODY_POLY4(GELU_BODY_GRAD)
	BODY_GRAD_OUT(0, Y4, Y8)
	BODY_GRAD_OUT(32, Y5, Y9)
	BODY_GRAD_OUT(64, Y6, Y10)
	BODY_GRAD_OUT(96, Y7, Y11)
	ADDQ       $128, BX
	JMP        grad4

grad1:
	CMPQ       BX, CX
	JGE        graddone
	BODY_INDEX(0, Y0, Y4)
	BODY_COPY(0, R8, R12)
	BODY_COLLECT(0, Y0)
	BODY_POLY1(GELU_BODY_GRAD)
	BODY_GRAD_OUT(0, Y4, Y8)
	ADDQ       $32, BX
	JMP        grad1

graddone:
	MOVQ       R10, ret+64(FP)
	VZEROUPPER
	RET

// func geluScatterAVX2(k int, y, outY, outX *float32, outAt *int32)
// Stores the k vectors of outY to y at the byte offsets outAt, in the
// lanes where outX (their x) is out of the body, leaving the others.
TEXT ·geluScatterAVX2(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ y+8(FP), DI
	MOVQ outY+16(FP), R8
	MOVQ outX+24(FP), SI
	MOVQ outAt+32(FP), R11
	BODY_SETUP
	XORQ BX, BX
	XORQ R10, R10

scatter:
	CMPQ       R10, CX
	JGE        scatterdone
	BODY_INDEX(0, Y0, Y4)
	VPAND      Y13, Y0, Y1
	VPCMPEQD   Y14, Y1, Y1 // in the body
	VPCMPEQD   Y2, Y2, Y2
	VPXOR      Y2, Y1, Y1 // out of it
	MOVLQSX    (R11)(R10*4), AX
	VMOVUPS    (DI)(AX*1), Y4
	VBLENDVPS  Y1, (R8)(BX*1), Y4, Y4
	VMOVUPS    Y4, (DI)(AX*1) // a load and a store: a masked store is slow on AMD
	ADDQ       $32, BX
	INCQ       R10
	JMP        scatter

scatterdone:
	VZEROUPPER
	RET
