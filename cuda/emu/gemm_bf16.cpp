//go:build cuda && cudaemu

// The kernels of ../../kernels/gemm_bf16.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/gemm_bf16.cu"

emu_entry emu_table_gemm_bf16[] = {
    EMU_ENTRY(gemm_bf16_nt_f32),
    EMU_ENTRY(gemm_bf16_nt_bf16),
    EMU_ENTRY(gemm_bf16_nt_gelu_bf16),
    EMU_ENTRY(gemm_bf16_nt_mma_f32),
    EMU_ENTRY(gemm_bf16_nt_mma_bf16),
    EMU_ENTRY(gemm_bf16_nt_mma_gelu_bf16),
};
int emu_table_gemm_bf16_len = sizeof(emu_table_gemm_bf16) / sizeof(emu_table_gemm_bf16[0]);
