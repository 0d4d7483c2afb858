//go:build cuda && cudaemu

// The kernels of ../../kernels/tensorcore_check.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/tensorcore_check.cu"

emu_entry emu_table_tensorcore_check[] = {
    EMU_ENTRY(tc_check_mma),     EMU_ENTRY(tc_check_ldmatrix), EMU_ENTRY(tc_check_cp_async),
    EMU_ENTRY(tc_check_wgmma),   EMU_ENTRY(tc_check_tma),      EMU_ENTRY(tc_check_cluster),
    EMU_ENTRY(tc_check_geometry), EMU_ENTRY(tc_check_divergent),
};
int emu_table_tensorcore_check_len = sizeof(emu_table_tensorcore_check) / sizeof(emu_table_tensorcore_check[0]);
