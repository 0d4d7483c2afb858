// arch_probe.cu: which compiled path of the kernels is running. One thread
// writes three ints:
//
//   out[0]  ARCH_PROBE_SM90A (2): the sm_90a cubin (Hopper-only code on);
//           ARCH_PROBE_PORTABLE (1): the PTX for compute_80, JIT-compiled
//           by the driver for whatever GPU this is;
//           ARCH_PROBE_HOST (0): the host emulation (no device compiler).
//   out[1]  __CUDA_ARCH__ the code was compiled for (900, 800; 0 on the host)
//   out[2]  the block's rank in its cluster (%cluster_ctarank; 0 for a launch
//           without clusters, and on the portable and host paths)
//
// It is also the proof of the convention for Hopper-only code (wgmma, TMA,
// setmaxnreg, clusters, fence.proxy.async): such code sits inside
//
//   #if defined(__CUDA_ARCH_FEAT_SM90_ALL)
//
// which nvcc defines only when compiling for sm_90a / compute_90a, so that
// nvcc 11.8's compute_80 PTX (which cannot even assemble those
// instructions) and the host emulation compile the #else branch. The
// sm_90a branch here executes fence.proxy.async and reads
// %cluster_ctarank; kernels/sass.tsv requires the fence (FENCE.VIEW.ASYNC)
// in the cubin's SASS, so a cubin built without the sm_90a path fails
// make check-kernels.
//
// Launch: grid (1), block (1). Versions: v1 (this file).

#define ARCH_PROBE_HOST 0
#define ARCH_PROBE_PORTABLE 1
#define ARCH_PROBE_SM90A 2

extern "C" __global__ void __launch_bounds__(32) arch_probe(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    unsigned rank;
    // Orders this thread's earlier shared-memory writes before later reads by
    // the async proxy (TMA, wgmma); here it only has to be there.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    out[0] = ARCH_PROBE_SM90A;
    out[1] = __CUDA_ARCH__;
    out[2] = (int)rank;
#elif defined(__CUDA_ARCH__)
    out[0] = ARCH_PROBE_PORTABLE;
    out[1] = __CUDA_ARCH__;
    out[2] = 0;
#else
    out[0] = ARCH_PROBE_HOST;
    out[1] = 0;
    out[2] = 0;
#endif
}
