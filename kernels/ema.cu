// ema.cu: one update of the exponential moving average of the weights
// (train.Options EMA) over the flat parameter buffer p, n floats in
// nn.Layout order:
//
//   ema[i] = float32(decay * double(ema[i]) + omd * double(p[i]))   omd = 1 - decay
//
// decay and omd are the host's float64 values (omd computed on the host, as
// the trainer's host path computes 1-decay). Both products and the sum are
// explicitly rounded double intrinsics (no FMA contraction), in the host's
// order, and the sum is rounded to float once, so the result equals the
// trainer's host formula bit for bit.
//
// Launch: grid-stride loop, grid (min(ceil(n/256), 65535)), block 256.
//
// Versions: v1.
extern "C" __global__ void __launch_bounds__(256)
ema_update(float* ema, const float* p, double decay, double omd, int n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)n; i += (size_t)gridDim.x * blockDim.x)
        ema[i] = (float)__dadd_rn(__dmul_rn(decay, (double)ema[i]), __dmul_rn(omd, (double)p[i]));
}
