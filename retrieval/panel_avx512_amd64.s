//go:build !purego

// The AVX-512 score kernel of the CPU search (AVX-512F): scorePanels of
// panel_amd64.s on two adjacent key panels at a time, a 6×32 tile of
// float32 scores whose two 16-key halves are each one ZMM register per
// query row, with the same threshold test and one answer bit per key
// panel. The key panels keep their layout (panel.go), so packing does not
// depend on the kernel: the second panel of a pair is read k·64 bytes
// after the first.
//
// Registers: Z4..Z15 hold the tile (query row i in Z(4+2i) for the first
// panel of the pair and Z(5+2i) for the second); Z0, Z1 a step of the two
// key panels; Z2, Z3 the broadcast queries; Z16 -Inf and Z18..Z23 the six
// thresholds, broadcast once per call. Each score is one VFMADD231PS
// chain in step order, as in the AVX2 kernel, so both give the same
// float32 scores bit for bit.

#include "textflag.h"

// STEP512 does one step of the 6×32 tile: acc(i, j) += q[i]·key[j], the
// query panel at R13 (6 values a step), the first key panel at DI and the
// second AX bytes after it (16 values a step each).
#define STEP512 \
	VMOVUPS      (DI), Z0       \
	VMOVUPS      (DI)(AX*1), Z1 \
	VBROADCASTSS (R13), Z2      \
	VFMADD231PS  Z0, Z2, Z4     \
	VFMADD231PS  Z1, Z2, Z5     \
	VBROADCASTSS 4(R13), Z3     \
	VFMADD231PS  Z0, Z3, Z6     \
	VFMADD231PS  Z1, Z3, Z7     \
	VBROADCASTSS 8(R13), Z2     \
	VFMADD231PS  Z0, Z2, Z8     \
	VFMADD231PS  Z1, Z2, Z9     \
	VBROADCASTSS 12(R13), Z3    \
	VFMADD231PS  Z0, Z3, Z10    \
	VFMADD231PS  Z1, Z3, Z11    \
	VBROADCASTSS 16(R13), Z2    \
	VFMADD231PS  Z0, Z2, Z12    \
	VFMADD231PS  Z1, Z2, Z13    \
	VBROADCASTSS 20(R13), Z3    \
	VFMADD231PS  Z0, Z3, Z14    \
	VFMADD231PS  Z1, Z3, Z15    \
	ADDQ         $24, R13       \
	ADDQ         $64, DI

// PASS512 sets in K3 (first panel) and K4 (second) the lanes of query row
// i's accumulators ZA, ZB that are not below its threshold ZT, or are
// -Inf: NLT_UQ (0x15) lets a NaN pass too, as in panel_amd64.s's PASS.
#define PASS512(ZT, ZA, ZB) \
	VCMPPS $0x15, ZT, ZA, K1  \
	KORW   K1, K3, K3         \
	VCMPPS $0x00, Z16, ZA, K1 \
	KORW   K1, K3, K3         \
	VCMPPS $0x15, ZT, ZB, K1  \
	KORW   K1, K4, K4         \
	VCMPPS $0x00, Z16, ZB, K1 \
	KORW   K1, K4, K4

// STORE_ROW512 stores row i of the tile (ZA, ZB) at R9 and moves R9 a row
// of c down.
#define STORE_ROW512(ZA, ZB) \
	VMOVUPS ZA, (R9)   \
	VMOVUPS ZB, 64(R9) \
	ADDQ    R8, R9

// func scorePanelPairs(k int, q *float32, keys *float32, pairs int, thr *[6]float32, c *float32, ldc int) uint64
//
// scorePanels (panel_amd64.s) over the 2·pairs > 0 key panels at keys: for
// each key panel p the 6×16 tile c[i*ldc + 16p + j] = Σ_q q[6q+i]·key[16q+j]
// as one FMA chain in step order, and bit p of the result set when some
// score of that tile in row i is not below thr[i], or is NaN or -Inf.
TEXT ·scorePanelPairs(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ q+8(FP), SI
	MOVQ keys+16(FP), DI
	MOVQ pairs+24(FP), BX
	MOVQ thr+32(FP), R10
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R8
	SHLQ $2, R8               // bytes between rows of c
	MOVQ CX, AX
	SHLQ $6, AX               // bytes of a key panel: from one to the next
	XORQ R11, R11             // the mask
	XORQ R12, R12             // the first panel of the pair

	MOVL         $0xff800000, R9 // -Inf
	VPBROADCASTD R9, Z16
	VBROADCASTSS (R10), Z18
	VBROADCASTSS 4(R10), Z19
	VBROADCASTSS 8(R10), Z20
	VBROADCASTSS 12(R10), Z21
	VBROADCASTSS 16(R10), Z22
	VBROADCASTSS 20(R10), Z23

pair:
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	MOVQ   SI, R13
	MOVQ   CX, R14
	CMPQ   R14, $4
	JLT    tail

loop4:
	STEP512
	STEP512
	STEP512
	STEP512
	SUBQ $4, R14
	CMPQ R14, $4
	JGE  loop4

tail:
	TESTQ R14, R14
	JZ    store

loop1:
	STEP512
	DECQ R14
	JNZ  loop1

store:
	// DI is now at the second panel of the pair; the next pair follows it.
	ADDQ AX, DI
	MOVQ DX, R9
	STORE_ROW512(Z4, Z5)
	STORE_ROW512(Z6, Z7)
	STORE_ROW512(Z8, Z9)
	STORE_ROW512(Z10, Z11)
	STORE_ROW512(Z12, Z13)
	STORE_ROW512(Z14, Z15)

	KXORW K3, K3, K3
	KXORW K4, K4, K4
	PASS512(Z18, Z4, Z5)
	PASS512(Z19, Z6, Z7)
	PASS512(Z20, Z8, Z9)
	PASS512(Z21, Z10, Z11)
	PASS512(Z22, Z12, Z13)
	PASS512(Z23, Z14, Z15)
	KORTESTW K3, K3
	JZ       second
	BTSQ     R12, R11

second:
	INCQ     R12
	KORTESTW K4, K4
	JZ       next
	BTSQ     R12, R11

next:
	INCQ R12
	ADDQ $128, DX
	DECQ BX
	JNZ  pair

	MOVQ R11, ret+56(FP)
	VZEROUPPER
	RET
