//go:build cuda && cudaemu

// The kernels of ../../kernels/topk.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/topk.cu"

emu_entry emu_table_topk[] = {
    EMU_ENTRY(normalize_rows),
    EMU_ENTRY(topk),
};
int emu_table_topk_len = sizeof(emu_table_topk) / sizeof(emu_table_topk[0]);
