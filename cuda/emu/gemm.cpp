//go:build cuda && cudaemu

// The kernels of ../../kernels/gemm.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/gemm.cu"

emu_entry emu_table_gemm[] = {
    EMU_ENTRY(gemm_nt_bias),
    EMU_ENTRY(gemm_nt_bias_gelu),
    EMU_ENTRY(gemm_nt_bias_stats),
    EMU_ENTRY(gemm_nn),
    EMU_ENTRY(gemm_tn),
};
int emu_table_gemm_len = sizeof(emu_table_gemm) / sizeof(emu_table_gemm[0]);
