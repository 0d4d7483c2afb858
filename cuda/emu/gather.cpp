//go:build cuda && cudaemu

// The kernels of ../../kernels/gather.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/gather.cu"

emu_entry emu_table_gather[] = {
    EMU_ENTRY(gather_rows_f16),
};
int emu_table_gather_len = sizeof(emu_table_gather) / sizeof(emu_table_gather[0]);
