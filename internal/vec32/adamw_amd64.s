//go:build !purego

// adamw: one AdamW update of n float32 parameters (n a multiple of 8),
// 8 at a time with AVX2, each operation rounded as the scalar loop in
// nn.AdamW rounds it (no fused multiply-add; VSQRTPS and VDIVPS are
// correctly rounded, as Go's float32 sqrt and division are).
//
// The four streams are prefetched 1 KiB ahead (a prefetch changes no bit
// and does not fault past the end). The update is fast enough from cache
// (about 0.6 ns an element on one Zen 3 core, 50 GB/s) that a thread is
// bound by how many of its streams' cache misses are in flight, which
// the out-of-order window alone keeps low: on a 2-vCPU Zen 3 (EPYC)
// under KVM, one thread updated 4 MiB of parameters in L3 at 56 GB/s with
// the prefetches against 34 without, 64 MiB in memory at 22 against 15
// (best of 20, interleaved, one process); 512 B to 4 KiB ahead all did
// about as well.

#include "textflag.h"

// func adamw(n int, param, grad, mom1, mom2 *float32, c *AdamWConsts)
TEXT ·adamw(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ param+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ mom1+24(FP), R8
	MOVQ mom2+32(FP), R9
	MOVQ c+40(FP), AX
	VBROADCASTSS 0(AX), Y9    // Decay
	VBROADCASTSS 4(AX), Y10   // OneMinusBeta1
	VBROADCASTSS 8(AX), Y11   // Beta2
	VBROADCASTSS 12(AX), Y12  // OneMinusBeta2
	VBROADCASTSS 16(AX), Y13  // StepSize
	VBROADCASTSS 20(AX), Y14  // BiasCorrection2Sqrt
	VBROADCASTSS 24(AX), Y15  // Eps
	XORQ BX, BX               // byte offset
	SHRQ $3, CX
	JZ   done

loop:
	PREFETCHT0 1024(SI)(BX*1)
	PREFETCHT0 1024(R8)(BX*1)
	PREFETCHT0 1024(R9)(BX*1)
	PREFETCHT0 1024(DI)(BX*1)
	VMOVUPS (SI)(BX*1), Y0    // g
	VMOVUPS (R8)(BX*1), Y1    // m
	VMOVUPS (R9)(BX*1), Y2    // v
	VMOVUPS (DI)(BX*1), Y3    // p
	VMULPS  Y9, Y3, Y3        // p = p*Decay
	VSUBPS  Y1, Y0, Y4        // g - m
	VMULPS  Y4, Y10, Y4       // OneMinusBeta1*(g - m)
	VADDPS  Y4, Y1, Y1        // m = m + that
	VMULPS  Y11, Y2, Y2       // v*Beta2
	VMULPS  Y0, Y12, Y5       // OneMinusBeta2*g
	VMULPS  Y0, Y5, Y5        // (OneMinusBeta2*g)*g
	VADDPS  Y5, Y2, Y2        // v = v*Beta2 + that
	VSQRTPS Y2, Y6            // sqrt(v)
	VDIVPS  Y14, Y6, Y6       // sqrt(v)/BiasCorrection2Sqrt
	VADDPS  Y15, Y6, Y6       // d = that + Eps
	VDIVPS  Y6, Y1, Y7        // m/d
	VMULPS  Y7, Y13, Y7       // StepSize*(m/d)
	VSUBPS  Y7, Y3, Y3        // p = p - that
	VMOVUPS Y3, (DI)(BX*1)
	VMOVUPS Y1, (R8)(BX*1)
	VMOVUPS Y2, (R9)(BX*1)
	ADDQ    $32, BX
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET
