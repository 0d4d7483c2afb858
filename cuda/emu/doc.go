// Package emu is the host emulator of the CUDA kernels: the sources of
// ../../kernels compiled as C++, with a small device-memory allocator.
// Package cuda/driver wraps it as the driver of the build tags
// cuda,cudaemu, so the GPU engine, its launch layer and its tests run on a
// machine without a GPU.
//
//   - emu.h maps the CUDA built-ins and declares the runtime's sync
//     objects; its header comment has the design.
//   - runtime.cpp runs a launch: one thread-block cluster after another
//     (a launch without clusters has clusters of one block), every thread
//     of the cluster a fiber on the calling OS thread, blocked on a sync
//     object (block or named barrier, warp or warpgroup collective,
//     mbarrier phase, cluster barrier) until it completes; threads run in
//     alternating order from one round to the next, warps held back for
//     rounds at random (seeded: SetScheduleSeed, DINOCLIP_EMU_SEED) so
//     that they drift apart; the thread whose arrival completes an
//     mbarrier phase sits out the next round, so the threads waiting on
//     the phase run before it goes on (a stage given back before it is
//     read is refilled first); a round where no thread can run and none
//     is held back is a deadlock or a divergent barrier, reported as the
//     launch's error. Any block up to 1024 threads, 3-D grids and blocks,
//     dynamic shared memory per block (filled with NaN at the block's
//     start), parameters passed as their exact bytes.
//   - tensorcore.cpp is the emulated twin of every function of
//     kernels/tensorcore.cuh (mma.sync, ldmatrix, cp.async, wgmma, TMA,
//     mbarrier, clusters), following the PTX ISA's fragment layouts;
//     asynchronous copies poison their destination until they are waited
//     on, so a missing wait reads NaN.
//   - one .cpp per kernels/*.cu family includes the source and lists its
//     entry points (EMU_ENTRY), which runtime.cpp's table collects.
//   - sources_gen.go records the hash of the kernels the emulator was
//     generated from: Go's build cache does not see the #included
//     kernels, so after a kernel is edited `make generate` changes this
//     file, which rebuilds the emulator, and TestBuiltFromTheKernels fails
//     until it is run.
//
// Only the files with the build tags cuda and cudaemu have code; the
// default build compiles this documentation alone.
package emu
