//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 loops over float32 rows for the layers and the optimizer. Each does, element by
// element, the same IEEE operations in the same order as the Go loop it replaces (no fused
// multiply-add), so results are bit-identical. A row's last cols%16 values go through a
// mask in K1 (the low cols%16 bits; BX holds cols rounded down to 16).


// func biasReLURowsAVX512(z, b *float32, rows, cols, ld int, bias, relu bool)
// z[r*ld+j] = relu?(z[r*ld+j] + b[j]) for r < rows, j < cols; relu clears every value whose
// sign bit is set; bias and relu each optional.
TEXT ·biasReLURowsAVX512(SB), NOSPLIT, $0-42
	MOVQ z+0(FP), DI
	MOVQ b+8(FP), SI
	MOVQ rows+16(FP), R8
	MOVQ ld+32(FP), R9
	SHLQ $2, R9
	MOVBLZX bias+40(FP), R10
	MOVBLZX relu+41(FP), R11
	MOVQ cols+24(FP), BX
	MOVQ BX, CX
	ANDQ $15, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	ANDQ $-16, BX
	TESTQ R8, R8
	JZ   brdone
brrow:
	XORQ DX, DX
	CMPQ DX, BX
	JGE  brtail
brloop:
	VMOVUPS (DI)(DX*4), Z0
	TESTQ R10, R10
	JZ   brnobias
	VADDPS (SI)(DX*4), Z0, Z0
brnobias:
	TESTQ R11, R11
	JZ   brstore
	VPSRAD $31, Z0, Z1
	VPANDND Z0, Z1, Z0
brstore:
	VMOVUPS Z0, (DI)(DX*4)
	ADDQ $16, DX
	CMPQ DX, BX
	JLT  brloop
brtail:
	KORTESTW K1, K1
	JZ   brnext
	VMOVUPS.Z (DI)(DX*4), K1, Z0
	TESTQ R10, R10
	JZ   brtnobias
	VMOVUPS.Z (SI)(DX*4), K1, Z2
	VADDPS Z2, Z0, Z0
brtnobias:
	TESTQ R11, R11
	JZ   brtstore
	VPSRAD $31, Z0, Z1
	VPANDND Z0, Z1, Z0
brtstore:
	VMOVUPS Z0, K1, (DI)(DX*4)
brnext:
	ADDQ R9, DI
	DECQ R8
	JNZ  brrow
brdone:
	VZEROUPPER
	RET

// func reluGradRowsAVX512(dy, y, db *float32, rows, cols, ld int, sum bool)
// dy[r*ld+j] = 0 where y's bits minus one are negative as an int32 (y is +0 or negative),
// then, when sum, db[j] += dy[r*ld+j], row after row.
TEXT ·reluGradRowsAVX512(SB), NOSPLIT, $0-49
	MOVQ dy+0(FP), DI
	MOVQ y+8(FP), SI
	MOVQ db+16(FP), R12
	MOVQ rows+24(FP), R8
	MOVQ ld+40(FP), R9
	SHLQ $2, R9
	MOVBLZX sum+48(FP), R10
	MOVQ cols+32(FP), BX
	MOVQ BX, CX
	ANDQ $15, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	ANDQ $-16, BX
	MOVL $1, AX
	VPBROADCASTD AX, Z3
	TESTQ R8, R8
	JZ   rgdone
rgrow:
	XORQ DX, DX
	CMPQ DX, BX
	JGE  rgtail
rgloop:
	VMOVUPS (SI)(DX*4), Z1
	VPSUBD Z3, Z1, Z1
	VPSRAD $31, Z1, Z1
	VPANDND (DI)(DX*4), Z1, Z0
	VMOVUPS Z0, (DI)(DX*4)
	TESTQ R10, R10
	JZ   rgnext16
	VADDPS (R12)(DX*4), Z0, Z0
	VMOVUPS Z0, (R12)(DX*4)
rgnext16:
	ADDQ $16, DX
	CMPQ DX, BX
	JLT  rgloop
rgtail:
	KORTESTW K1, K1
	JZ   rgnext
	VMOVUPS.Z (SI)(DX*4), K1, Z1
	VMOVUPS.Z (DI)(DX*4), K1, Z2
	VPSUBD Z3, Z1, Z1
	VPSRAD $31, Z1, Z1
	VPANDND Z2, Z1, Z0
	VMOVUPS Z0, K1, (DI)(DX*4)
	TESTQ R10, R10
	JZ   rgnext
	VMOVUPS.Z (R12)(DX*4), K1, Z2
	VADDPS Z2, Z0, Z0
	VMOVUPS Z0, K1, (R12)(DX*4)
rgnext:
	ADDQ R9, DI
	ADDQ R9, SI
	DECQ R8
	JNZ  rgrow
rgdone:
	VZEROUPPER
	RET

// func adamAVX512(w, grad, m, v *float32, n int, omb1, omb2, alpha, eps float32)
// Keras 3's Adam: m += (g−m)·(1−β1); v += (g·g−v)·(1−β2); w −= (m·α)/(√v + ε).
TEXT ·adamAVX512(SB), NOSPLIT, $0-56
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R12
	MOVQ v+24(FP), R13
	VBROADCASTSS omb1+40(FP), Z10
	VBROADCASTSS omb2+44(FP), Z11
	VBROADCASTSS alpha+48(FP), Z12
	VBROADCASTSS eps+52(FP), Z13
	MOVQ n+32(FP), BX
	MOVQ BX, CX
	ANDQ $15, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	ANDQ $-16, BX
	XORQ DX, DX
	CMPQ DX, BX
	JGE  adtail
adloop:
	VMOVUPS (SI)(DX*4), Z0
	VMOVUPS (R12)(DX*4), Z1
	VMOVUPS (R13)(DX*4), Z2
	VSUBPS Z1, Z0, Z4
	VMULPS Z10, Z4, Z4
	VADDPS Z4, Z1, Z1
	VMOVUPS Z1, (R12)(DX*4)
	VMULPS Z0, Z0, Z5
	VSUBPS Z2, Z5, Z5
	VMULPS Z11, Z5, Z5
	VADDPS Z5, Z2, Z2
	VMOVUPS Z2, (R13)(DX*4)
	VSQRTPS Z2, Z6
	VADDPS Z13, Z6, Z6
	VMULPS Z12, Z1, Z7
	VDIVPS Z6, Z7, Z7
	VMOVUPS (DI)(DX*4), Z3
	VSUBPS Z7, Z3, Z3
	VMOVUPS Z3, (DI)(DX*4)
	ADDQ $16, DX
	CMPQ DX, BX
	JLT  adloop
adtail:
	KORTESTW K1, K1
	JZ   addone
	VMOVUPS.Z (SI)(DX*4), K1, Z0
	VMOVUPS.Z (R12)(DX*4), K1, Z1
	VMOVUPS.Z (R13)(DX*4), K1, Z2
	VSUBPS Z1, Z0, Z4
	VMULPS Z10, Z4, Z4
	VADDPS Z4, Z1, Z1
	VMOVUPS Z1, K1, (R12)(DX*4)
	VMULPS Z0, Z0, Z5
	VSUBPS Z2, Z5, Z5
	VMULPS Z11, Z5, Z5
	VADDPS Z5, Z2, Z2
	VMOVUPS Z2, K1, (R13)(DX*4)
	VSQRTPS Z2, Z6
	VADDPS Z13, Z6, Z6
	VMULPS Z12, Z1, Z7
	VDIVPS Z6, Z7, Z7
	VMOVUPS.Z (DI)(DX*4), K1, Z3
	VSUBPS Z7, Z3, Z3
	VMOVUPS Z3, K1, (DI)(DX*4)
addone:
	VZEROUPPER
	RET

// func adamTFJSAVX512(w, grad, m, v *float32, n int, c *[8]float32)
// TF.js's Adam, c = {β1, 1−β1, β2, 1−β2, 1−β1^t, 1−β2^t, ε, −lr}: m = m·β1 + g·(1−β1);
// v = v·β2 + (g·g)·(1−β2); w += ((m/(1−β1^t)) / (√(v/(1−β2^t)) + ε))·(−lr).
TEXT ·adamTFJSAVX512(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R12
	MOVQ v+24(FP), R13
	MOVQ c+40(FP), AX
	VBROADCASTSS 0(AX), Z8
	VBROADCASTSS 4(AX), Z9
	VBROADCASTSS 8(AX), Z10
	VBROADCASTSS 12(AX), Z11
	VBROADCASTSS 16(AX), Z12
	VBROADCASTSS 20(AX), Z13
	VBROADCASTSS 24(AX), Z14
	VBROADCASTSS 28(AX), Z15
	MOVQ n+32(FP), BX
	MOVQ BX, CX
	ANDQ $15, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	ANDQ $-16, BX
	XORQ DX, DX
	CMPQ DX, BX
	JGE  attail
atloop:
	VMOVUPS (SI)(DX*4), Z0
	VMOVUPS (R12)(DX*4), Z1
	VMOVUPS (R13)(DX*4), Z2
	VMULPS Z8, Z1, Z1
	VMULPS Z9, Z0, Z4
	VADDPS Z4, Z1, Z1
	VMOVUPS Z1, (R12)(DX*4)
	VMULPS Z10, Z2, Z2
	VMULPS Z0, Z0, Z5
	VMULPS Z11, Z5, Z5
	VADDPS Z5, Z2, Z2
	VMOVUPS Z2, (R13)(DX*4)
	VDIVPS Z12, Z1, Z6
	VDIVPS Z13, Z2, Z7
	VSQRTPS Z7, Z7
	VADDPS Z14, Z7, Z7
	VDIVPS Z7, Z6, Z6
	VMULPS Z15, Z6, Z6
	VMOVUPS (DI)(DX*4), Z3
	VADDPS Z6, Z3, Z3
	VMOVUPS Z3, (DI)(DX*4)
	ADDQ $16, DX
	CMPQ DX, BX
	JLT  atloop
attail:
	KORTESTW K1, K1
	JZ   atdone
	VMOVUPS.Z (SI)(DX*4), K1, Z0
	VMOVUPS.Z (R12)(DX*4), K1, Z1
	VMOVUPS.Z (R13)(DX*4), K1, Z2
	VMULPS Z8, Z1, Z1
	VMULPS Z9, Z0, Z4
	VADDPS Z4, Z1, Z1
	VMOVUPS Z1, K1, (R12)(DX*4)
	VMULPS Z10, Z2, Z2
	VMULPS Z0, Z0, Z5
	VMULPS Z11, Z5, Z5
	VADDPS Z5, Z2, Z2
	VMOVUPS Z2, K1, (R13)(DX*4)
	VDIVPS Z12, Z1, Z6
	VDIVPS Z13, Z2, Z7
	VSQRTPS Z7, Z7
	VADDPS Z14, Z7, Z7
	VDIVPS Z7, Z6, Z6
	VMULPS Z15, Z6, Z6
	VMOVUPS.Z (DI)(DX*4), K1, Z3
	VADDPS Z6, Z3, Z3
	VMOVUPS Z3, K1, (DI)(DX*4)
atdone:
	VZEROUPPER
	RET

// func copyPanelAVX512(dst *float32, ldd int, src *float32, lds, n, kc int)
// dst[p*ldd+j] = src[p*lds+j] for p < kc, j < n ≤ 32: the packing of a panel whose rows
// are contiguous in the source.
TEXT ·copyPanelAVX512(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	SHLQ $2, R9
	MOVQ n+32(FP), CX
	MOVQ kc+40(FP), R10
	// K1: the first min(n, 16) lanes; K2: the next n−16 (none when n ≤ 16).
	MOVQ CX, BX
	CMPQ BX, $16
	JLE  cplow
	MOVQ $16, BX
cplow:
	MOVQ CX, R11
	MOVQ BX, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	MOVQ R11, CX
	SUBQ BX, CX
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K2
	TESTQ R10, R10
	JZ   cpdone
cploop:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS Z0, K1, (DI)
	VMOVUPS Z1, K2, 64(DI)
	ADDQ R9, SI
	ADDQ R8, DI
	DECQ R10
	JNZ  cploop
cpdone:
	VZEROUPPER
	RET
