//go:build cuda && cudaemu

// The kernels of ../../kernels/gelu.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/gelu.cu"

emu_entry emu_table_gelu[] = {
    EMU_ENTRY(gelu_forward),
    EMU_ENTRY(gelu_backward),
};
int emu_table_gelu_len = sizeof(emu_table_gelu) / sizeof(emu_table_gelu[0]);
