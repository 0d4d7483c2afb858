//go:build cuda && cudaemu

// The kernels of ../../kernels/gemm_bf16_ref.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/gemm_bf16_ref.cu"

emu_entry emu_table_gemm_bf16_ref[] = {
    EMU_ENTRY(gemm_bf16_mma_ref),
    EMU_ENTRY(gemm_bf16_wgmma_ref),
};
int emu_table_gemm_bf16_ref_len = sizeof(emu_table_gemm_bf16_ref) / sizeof(emu_table_gemm_bf16_ref[0]);
