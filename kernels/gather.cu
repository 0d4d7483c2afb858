// gather.cu: a training batch taken from the training data held on the GPU
// (Engine.LoadResident), which is stored as float16 bits:
//
//   gather_rows_f16  grid (n), block 256: one block per batch row;
//                    dst[i, j] = float(src[rows[i], j]) for j < d, where
//                    src is [nsrc, d] IEEE binary16 and dst [n, d] float32.
//                    An index outside [0, nsrc) writes NaN across the row
//                    (the host checks the indices first; NaN makes a bug
//                    show as a non-finite loss rather than a stray read).
//
// float16 -> float32 is exact (every binary16 value is a float32): it is
// done on the bits, with integer operations only, and gives the float32
// that npy.Float16Value gives for the same bits (NaN payloads included), so
// a batch gathered here is the batch the host would have uploaded.
// Normal halves are re-biased (exponent + 127 - 15), subnormal ones are
// m * 2^-24 (m < 1024, exact in float32, and a normal float32, so no flush
// to zero can touch it).
//
// The engine launches it twice per step, for the inputs (d = InputDim) and
// the targets (d = OutputDim); a row of 768 halves is 1.5 KiB, read
// coalesced, so the gather is a small fraction of the step.
//
// Versions: v1 (this file).

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
gather_rows_f16(float* dst, const unsigned short* src, const int* rows, int n, int d, int nsrc) {
    const int i = blockIdx.x;
    if (i >= n) return;
    const int r = rows[i];
    float* out = dst + (size_t)i * d;
    if (r < 0 || r >= nsrc) {
        for (int j = threadIdx.x; j < d; j += blockDim.x) out[j] = __uint_as_float(0x7fc00000u);
        return;
    }
    const unsigned short* in = src + (size_t)r * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) out[j] = half_bits_to_float(in[j]);
}
