//go:build !purego

// add: dst = x + y for n float32 (n a multiple of 8), 32 at a time while
// it can, then 8 (AVX2; VADDPS rounds each sum as Go's float32 + does).

#include "textflag.h"

// func add(n int, dst, x, y *float32)
TEXT ·add(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ y+24(FP), DX
	XORQ BX, BX               // byte offset
	MOVQ CX, AX
	SHRQ $5, AX               // blocks of 32
	JZ   tail

block:
	VMOVUPS (SI)(BX*1), Y0
	VMOVUPS 32(SI)(BX*1), Y1
	VMOVUPS 64(SI)(BX*1), Y2
	VMOVUPS 96(SI)(BX*1), Y3
	VADDPS  (DX)(BX*1), Y0, Y0
	VADDPS  32(DX)(BX*1), Y1, Y1
	VADDPS  64(DX)(BX*1), Y2, Y2
	VADDPS  96(DX)(BX*1), Y3, Y3
	VMOVUPS Y0, (DI)(BX*1)
	VMOVUPS Y1, 32(DI)(BX*1)
	VMOVUPS Y2, 64(DI)(BX*1)
	VMOVUPS Y3, 96(DI)(BX*1)
	ADDQ    $128, BX
	DECQ    AX
	JNZ     block

tail:
	ANDQ $31, CX
	SHRQ $3, CX               // vectors of 8 left
	JZ   done

vec:
	VMOVUPS (SI)(BX*1), Y0
	VADDPS  (DX)(BX*1), Y0, Y0
	VMOVUPS Y0, (DI)(BX*1)
	ADDQ    $32, BX
	DECQ    CX
	JNZ     vec

done:
	VZEROUPPER
	RET
