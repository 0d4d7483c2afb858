// gelu.cu: the backward of GELU, exact erf form (PyTorch nn.GELU() default,
// not the tanh approximation), elementwise over n values, in float32:
//
//   gelu_backward  dx = dy (Phi(x) + x phi(x))     (dx may alias dy)
//
// Phi is evaluated as erfc(-x/sqrt2)/2 (common.cuh): accurate in both
// tails. The CPU evaluates in float64 and rounds once; float32 erfcf/expf
// are within a few ulps of that.
//
// The model's forward GELUs are fused (ln_apply mode 1, gemm_nt_bias_gelu);
// gelu_backward runs after each gemm_nn that produces the gradient of a
// GELU output.
//
// Launch: grid-stride loop, grid (min(ceil(n/256), 65535)), block 256.
//
// Versions: v1 (this file).
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
gelu_backward(float* dx, const float* dy, const float* x, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        dx[i] = dy[i] * gelu_grad_f(x[i]);
}
