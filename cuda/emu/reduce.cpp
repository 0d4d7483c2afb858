//go:build cuda && cudaemu

// The kernels of ../../kernels/reduce.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/reduce.cu"

emu_entry emu_table_reduce[] = {
    EMU_ENTRY(colsum_partial),
    EMU_ENTRY(colsum_final),
};
int emu_table_reduce_len = sizeof(emu_table_reduce) / sizeof(emu_table_reduce[0]);
