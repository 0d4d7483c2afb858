//go:build cuda && cudaemu

// The kernels of ../../kernels/layernorm.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/layernorm.cu"

emu_entry emu_table_layernorm[] = {
    EMU_ENTRY(ln_apply),
    EMU_ENTRY(ln_forward),
    EMU_ENTRY(ln_backward),
};
int emu_table_layernorm_len = sizeof(emu_table_layernorm) / sizeof(emu_table_layernorm[0]);
