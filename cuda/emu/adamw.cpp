//go:build cuda && cudaemu

// The kernels of ../../kernels/adamw.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/adamw.cu"

emu_entry emu_table_adamw[] = {
    EMU_ENTRY(adamw),
};
int emu_table_adamw_len = sizeof(emu_table_adamw) / sizeof(emu_table_adamw[0]);
