// adamw.cu: one AdamW step (torch.optim.AdamW semantics, as nn.AdamW) over
// the flat parameter buffer p with gradients g and moments m, v (n floats
// each, nn.Layout order):
//
//   p = p * decay                                    decay      = 1 - lr*wd
//   m = m + omb1 * (g - m)                           omb1       = 1 - beta1
//   v = v * b2 + (omb2 * g) * g                      b2, omb2   = beta2, 1 - beta2
//   p = p - step * (m / (sqrt(v) / bc2sqrt + eps))   step       = lr/(1 - beta1^s)
//                                                    bc2sqrt    = sqrt(1 - beta2^s)
//
// The scalars are computed on the host in float64 and rounded to float32,
// exactly as nn.AdamW[float32] does; each elementwise operation is an
// explicitly rounded float32 intrinsic (no FMA contraction, IEEE division
// and square root), in the CPU's order, so the result equals the float32
// CPU engine's bit for bit.
//
// adamw_bf16 is the same update that also writes pb[i] = bf16(p[i]) (round
// to nearest even), the bf16 copy of the weights the bf16 engine's GEMMs
// read, in the same pass: p stays the float32 master copy.
//
// adamw_guarded and adamw_bf16_guarded are the same updates for a step that
// runs without the host (a captured CUDA graph, the loss read back a step
// late): the seven scalars come from device memory, sc = {decay, omb1, b2,
// omb2, step, bc2sqrt, eps} (nn.AdamWScalars[float32] in field order,
// written there by the host before the step), and the update is skipped
// when the step's loss sum (*loss, a double) is not finite, or when an
// earlier guarded step found one (*halted != 0). The first thread sets
// *halted on a non-finite loss, so every later guarded step skips too: a
// diverged step never reaches the weights or the moments, nor does any
// step the host enqueued before it read that loss. Every thread reads the
// loss itself, so which threads see the flag written in this launch does
// not change what they do.
//
// Launch: grid-stride loop, grid (min(ceil(n/256), 65535)), block 256.
//
// Versions: v1 adamw; v2 adds adamw_bf16 (adamw unchanged); v3 adds
// adamw_guarded and adamw_bf16_guarded (the others unchanged).
#include "tensorcore.cuh"

// adamw_update updates element i and returns its new parameter.
__device__ __forceinline__ float adamw_update(size_t i, float* p, const float* g, float* m, float* v, float decay, float omb1, float b2,
                                              float omb2, float step, float bc2sqrt, float eps) {
    const float gi = g[i], mi0 = m[i];
    const float pi = __fmul_rn(p[i], decay);
    const float mi = __fadd_rn(mi0, __fmul_rn(omb1, __fsub_rn(gi, mi0)));
    const float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(omb2, gi), gi));
    const float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2sqrt), eps);
    const float pn = __fsub_rn(pi, __fmul_rn(step, __fdiv_rn(mi, den)));
    p[i] = pn;
    m[i] = mi;
    v[i] = vi;
    return pn;
}

extern "C" __global__ void __launch_bounds__(256)
adamw(float* p, const float* g, float* m, float* v, float decay, float omb1, float b2, float omb2, float step,
      float bc2sqrt, float eps, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        adamw_update(i, p, g, m, v, decay, omb1, b2, omb2, step, bc2sqrt, eps);
}

extern "C" __global__ void __launch_bounds__(256)
adamw_bf16(float* p, uint16_t* pb, const float* g, float* m, float* v, float decay, float omb1, float b2, float omb2, float step,
           float bc2sqrt, float eps, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        pb[i] = f32_to_bf16(adamw_update(i, p, g, m, v, decay, omb1, b2, omb2, step, bc2sqrt, eps));
}

// adamw_skip says whether a guarded step leaves everything as it is, and
// records a non-finite loss in *halted.
__device__ __forceinline__ bool adamw_skip(const double* loss, int* halted) {
    const bool finite = isfinite(*loss);
    if (!finite && blockIdx.x == 0 && threadIdx.x == 0) *halted = 1;
    return !finite || *halted != 0;
}

extern "C" __global__ void __launch_bounds__(256)
adamw_guarded(float* p, const float* g, float* m, float* v, const float* sc, const double* loss, int* halted, int n) {
    if (adamw_skip(loss, halted)) return;
    const float decay = sc[0], omb1 = sc[1], b2 = sc[2], omb2 = sc[3], step = sc[4], bc2sqrt = sc[5], eps = sc[6];
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        adamw_update(i, p, g, m, v, decay, omb1, b2, omb2, step, bc2sqrt, eps);
}

extern "C" __global__ void __launch_bounds__(256)
adamw_bf16_guarded(float* p, uint16_t* pb, const float* g, float* m, float* v, const float* sc, const double* loss, int* halted,
                   int n) {
    if (adamw_skip(loss, halted)) return;
    const float decay = sc[0], omb1 = sc[1], b2 = sc[2], omb2 = sc[3], step = sc[4], bc2sqrt = sc[5], eps = sc[6];
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        pb[i] = f32_to_bf16(adamw_update(i, p, g, m, v, decay, omb1, b2, omb2, step, bc2sqrt, eps));
}
