//go:build cuda && cudaemu

// The kernels of ../../kernels/loss.cu compiled for the host emulation (see emu.h).
#include "emu.h"

#include "../../kernels/loss.cu"

emu_entry emu_table_loss[] = {
    EMU_ENTRY(unitnorm_mse),
    EMU_ENTRY(loss_sum),
};
int emu_table_loss_len = sizeof(emu_table_loss) / sizeof(emu_table_loss[0]);
