# Generates gemm_amd64.s, the AVX-512 and AVX2 sgemm micro-kernels in Go assembly:
#   cd model && python3 gemm_asm_gen.py
import os
def avx512_begin(w, mr):
    # Zero the 2*mr accumulators, open the loop and load the row of B's panel.
    for r in range(2*mr):
        w("\tVPXORD Z%d, Z%d, Z%d" % (r, r, r))
    w("loop:")
    w("\tVMOVUPS (DI), Z24")
    w("\tVMOVUPS 64(DI), Z25")

def avx512_fma(w, i, src):
    # Row i of the tile: broadcast a[i] from src, multiply-add it with B's row.
    bc = 26 + (i % 6)
    w("\tVBROADCASTSS %s, Z%d" % (src, bc))
    w("\tVFMADD231PS Z24, Z%d, Z%d" % (bc, 2*i))
    w("\tVFMADD231PS Z25, Z%d, Z%d" % (bc, 2*i+1))

def avx512_end(w, mr, load_off):
    # Close the loop, then add the tile to C (load) or store it, row by row.
    w("\tDECQ CX")
    w("\tJNZ loop")
    w("\tMOVBLZX load+%d(FP), AX" % load_off)
    w("\tTESTL AX, AX")
    w("\tJZ store")
    for i in range(mr):
        w("\tVADDPS (DX), Z%d, Z%d" % (2*i, 2*i))
        w("\tVADDPS 64(DX), Z%d, Z%d" % (2*i+1, 2*i+1))
        w("\tVMOVUPS Z%d, (DX)" % (2*i))
        w("\tVMOVUPS Z%d, 64(DX)" % (2*i+1))
        if i < mr-1: w("\tADDQ R8, DX")
    w("\tVZEROUPPER")
    w("\tRET")
    w("store:")
    for i in range(mr):
        w("\tVMOVUPS Z%d, (DX)" % (2*i))
        w("\tVMOVUPS Z%d, 64(DX)" % (2*i+1))
        if i < mr-1: w("\tADDQ R8, DX")
    w("\tVZEROUPPER")
    w("\tRET")

def avx512(mr=12):
    out=[]
    w=out.append
    w("// func sgemmKernelAVX512(kc int, a, b, c *float32, ldc int, load bool)")
    w("// C[0:%d, 0:32] (row stride ldc) = (load ? C : 0) + sum_p a[p*%d+i] * b[p*32+j]" % (mr, mr))
    w("TEXT ·sgemmKernelAVX512(SB), NOSPLIT, $0-41")
    w("\tMOVQ kc+0(FP), CX")
    w("\tMOVQ a+8(FP), SI")
    w("\tMOVQ b+16(FP), DI")
    w("\tMOVQ c+24(FP), DX")
    w("\tMOVQ ldc+32(FP), R8")
    w("\tSHLQ $2, R8")
    avx512_begin(w, mr)
    for i in range(mr):
        avx512_fma(w, i, "%d(SI)" % (4*i))
    w("\tADDQ $%d, SI" % (4*mr))
    w("\tADDQ $128, DI")
    avx512_end(w, mr, 40)
    return "\n".join(out)

def avx512_rows(mr=12):
    # The same kernel reading A unpacked: row i of the panel at a + i*lda, p along the row.
    out=[]
    w=out.append
    w("// func sgemmKernelAVX512Rows(kc int, a *float32, lda int, b, c *float32, ldc int, load bool)")
    w("// C[0:%d, 0:32] (row stride ldc) = (load ? C : 0) + sum_p a[i*lda+p] * b[p*32+j]" % mr)
    w("TEXT ·sgemmKernelAVX512Rows(SB), NOSPLIT, $0-49")
    w("\tMOVQ kc+0(FP), CX")
    w("\tMOVQ a+8(FP), SI")
    w("\tMOVQ lda+16(FP), R9")
    w("\tSHLQ $2, R9")
    w("\tMOVQ b+24(FP), DI")
    w("\tMOVQ c+32(FP), DX")
    w("\tMOVQ ldc+40(FP), R8")
    w("\tSHLQ $2, R8")
    w("\tLEAQ (R9)(R9*2), R10")
    w("\tLEAQ (SI)(R9*4), R11")
    w("\tLEAQ (R11)(R9*4), R12")
    avx512_begin(w, mr)
    bases = ["SI", "R11", "R12"]
    idx = ["", "(R9*1)", "(R9*2)", "(R10*1)"]
    for i in range(mr):
        avx512_fma(w, i, "(%s)%s" % (bases[i//4], idx[i%4]))
    w("\tADDQ $4, SI")
    w("\tADDQ $4, R11")
    w("\tADDQ $4, R12")
    w("\tADDQ $128, DI")
    avx512_end(w, mr, 48)
    return "\n".join(out)

def avx512_bcols(mr=12):
    # The packed kernel reading B unpacked: row p of the panel at b + p*ldb.
    out=[]
    w=out.append
    w("// func sgemmKernelAVX512BRows(kc int, a, b *float32, ldb int, c *float32, ldc int, load bool)")
    w("// C[0:%d, 0:32] (row stride ldc) = (load ? C : 0) + sum_p a[p*%d+i] * b[p*ldb+j]" % (mr, mr))
    w("TEXT ·sgemmKernelAVX512BRows(SB), NOSPLIT, $0-49")
    w("\tMOVQ kc+0(FP), CX")
    w("\tMOVQ a+8(FP), SI")
    w("\tMOVQ b+16(FP), DI")
    w("\tMOVQ ldb+24(FP), R9")
    w("\tSHLQ $2, R9")
    w("\tMOVQ c+32(FP), DX")
    w("\tMOVQ ldc+40(FP), R8")
    w("\tSHLQ $2, R8")
    avx512_begin(w, mr)
    for i in range(mr):
        avx512_fma(w, i, "%d(SI)" % (4*i))
    w("\tADDQ $%d, SI" % (4*mr))
    w("\tADDQ R9, DI")
    avx512_end(w, mr, 48)
    return "\n".join(out)

def avx2(mr=6):
    out=[]
    w=out.append
    w("// func sgemmKernelAVX2(kc int, a, b, c *float32, ldc int, load bool)")
    w("// C[0:%d, 0:16] (row stride ldc) = (load ? C : 0) + sum_p a[p*%d+i] * b[p*16+j]" % (mr, mr))
    w("TEXT ·sgemmKernelAVX2(SB), NOSPLIT, $0-41")
    w("\tMOVQ kc+0(FP), CX")
    w("\tMOVQ a+8(FP), SI")
    w("\tMOVQ b+16(FP), DI")
    w("\tMOVQ c+24(FP), DX")
    w("\tMOVQ ldc+32(FP), R8")
    w("\tSHLQ $2, R8")
    for r in range(2*mr):
        w("\tVXORPS Y%d, Y%d, Y%d" % (r, r, r))
    w("loop2:")
    w("\tVMOVUPS (DI), Y12")
    w("\tVMOVUPS 32(DI), Y13")
    for i in range(mr):
        bc = 14 + (i % 2)
        w("\tVBROADCASTSS %d(SI), Y%d" % (4*i, bc))
        w("\tVFMADD231PS Y12, Y%d, Y%d" % (bc, 2*i))
        w("\tVFMADD231PS Y13, Y%d, Y%d" % (bc, 2*i+1))
    w("\tADDQ $%d, SI" % (4*mr))
    w("\tADDQ $64, DI")
    w("\tDECQ CX")
    w("\tJNZ loop2")
    w("\tMOVBLZX load+40(FP), AX")
    w("\tTESTL AX, AX")
    w("\tJZ store2")
    for i in range(mr):
        w("\tVADDPS (DX), Y%d, Y%d" % (2*i, 2*i))
        w("\tVADDPS 32(DX), Y%d, Y%d" % (2*i+1, 2*i+1))
        w("\tVMOVUPS Y%d, (DX)" % (2*i))
        w("\tVMOVUPS Y%d, 32(DX)" % (2*i+1))
        if i < mr-1: w("\tADDQ R8, DX")
    w("\tVZEROUPPER")
    w("\tRET")
    w("store2:")
    for i in range(mr):
        w("\tVMOVUPS Y%d, (DX)" % (2*i))
        w("\tVMOVUPS Y%d, 32(DX)" % (2*i+1))
        if i < mr-1: w("\tADDQ R8, DX")
    w("\tVZEROUPPER")
    w("\tRET")
    return "\n".join(out)

hdr = """// Code generated by gemm_asm_gen.py; DO NOT EDIT.

//go:build amd64 && !purego

#include "textflag.h"

"""
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'gemm_amd64.s'), 'w').write(hdr + avx512() + "\n\n" + avx512_rows() + "\n\n" + avx512_bcols() + "\n\n" + avx2() + "\n")
