// Package cuda is the GPU engine: an [nn.Engine] that runs the model on an
// NVIDIA GPU with the kernels of package kernels (kernels/*.cu, embedded as
// PTX and as sm_90a cubins), driven from Go through gorgonia.org/cu (the
// CUDA driver API).
//
// # Layers
//
// Each layer is a package with one job; a lower one never imports a
// higher one. From the bottom:
//   - cuda/emu: the host emulator of the kernels (tags cuda,cudaemu): the
//     kernels compiled as C++ for the host, with the CUDA built-ins they
//     use; it knows nothing of drivers;
//   - cuda/driver: the device itself (context, stream, modules, memory,
//     launches, events), on the NVIDIA driver or, under cudaemu, on
//     cuda/emu;
//   - cuda/launch: one generated, typed launch function per kernel entry
//     point, which packs its parameters as the kernel declares them and
//     hands them to a driver's launch;
//   - this package: the wrappers that check shapes and choose the grid
//     (ops.go, ops_bf16.go, gemm_bf16.go, and gemm_check.go, the bf16
//     GEMMs' check), the device's worker thread (device.go) and the
//     engine (engine.go, engine_bf16.go, resident.go, step.go, and
//     engine_check.go, the check of a whole engine at its first open), exact
//     search (search.go, search_check.go, and topk.go: its retrieval.TopK
//     form) and the hooks of package internal/enginehooks that package
//     bench measures through (hooks.go).
//
// Everything except this file carries the build tag cuda: gorgonia.org/cu
// links libcuda.so.1 and its package init calls cuInit and exits the process
// when there is no GPU or driver, so only a binary built with -tags cuda
// imports it, and such a binary needs an NVIDIA GPU host to start (even to
// run on the CPU). The default build compiles this documentation alone.
//
// # Design
//
// Thread: CUDA contexts are per OS thread. A [Device] starts one goroutine
// that calls runtime.LockOSThread, creates the context and the stream, loads
// the modules (cu.LoadData on the embedded images kernels.Choose picks for
// the GPU and driver: the cubins on sm_90, else the PTX, which the driver
// JIT-compiles; docs/GPU-BUILD.md) and then runs the closures
// that every other method sends it over a channel, one at a time. An engine
// call (ForwardBackward, Step, ...) is one closure, so a training step is one
// channel round trip whatever number of kernels it launches.
//
// Memory: an [Engine] makes one device allocation for its state: the
// parameters, the gradients and the AdamW moments, NumParams float32 each,
// back to back, each in nn.Layout order so that the flat views and the
// per-tensor views are the CPU's. A second allocation, the workspace, holds
// the batch, the activations the backward pass needs (the same set as
// nn.Model keeps) and the scratch buffers, for the largest batch seen so
// far; a bigger batch frees it and allocates a bigger one. Running out of
// GPU memory is reported as "out of GPU memory: batch N needs X GiB ...".
// Sub-buffers are carved at 256-byte alignment.
//
// Resident data: the engine is an nn.ResidentEngine. LoadResident makes a
// third allocation, the whole training set as float16 (2 bytes a value;
// float32 shards arrive rounded to float16, so such a data set trains on
// float16-rounded values when resident), uploaded once in chunks of 64 MiB
// so the host holds one chunk at a time. It is made only when it fits
// beside the workspace of the training batch with 1/32 of the GPU (at least
// 256 MiB) spare; otherwise the error wraps nn.ErrNotResident and the
// trainer reads batches on the host. ForwardBackwardRows then uploads the
// batch's row indices, and gather_rows_f16 converts the rows exactly into
// the batch buffers, so it equals ForwardBackward on the same values bit
// for bit.
//
// Launches: the launch layer (package cuda/launch) is generated from the
// kernels' signatures (see "Adding a kernel"): one typed Go function per
// kernel whose parameters follow the kernel's, in order, with device
// pointers typed by element and constness (launch.Ptr[float32] for
// float*, launch.ConstPtr[float32] for const float*), int32 for int and so
// on, each packed with its exact size. The hand-written wrappers of ops.go
// check the buffers against the shapes and the grid limits, return an
// error, and call them. The Device's Launcher passes a launch that the
// basic cuLaunchKernel path takes (parameters of at most 8 bytes, 2-D grid,
// no cluster or dynamic shared memory) to Driver.Launch, each value in the
// low bytes of a uint64, and any other to the driver's extended calls.
// All work goes to one stream; host copies are stream-ordered and every
// engine call but the pipelined step (below) and UpdateEMA ends with a
// stream synchronisation, which is also where an asynchronous kernel fault
// surfaces as an error.
//
// The pipelined step (step.go; nn.PipelinedEngine): the trainer's MSE
// steps on resident data go through StepRows, which enqueues the whole
// step without waiting for the device: the batch's row indices and the
// step's AdamW scalars are copied into device memory first, then gather,
// forward, loss, backward and adamw_guarded, which reads those scalars
// there; the loss sum goes by an asynchronous copy into pinned memory and
// is read at the next call, after the event behind it. The kernels'
// parameters are then the same at every step, so the step is captured
// once per shape as a CUDA graph and replayed (its first step runs launch
// by launch, the second is captured). The NaN guard is on the device:
// adamw_guarded skips the update of a step whose loss is not finite and of
// every step after it, so the state is that of the last step whose loss
// came back finite when the host reports the non-finite one, a call late.
// InfoNCE keeps ForwardBackwardRows and Step: its logit scale is trained on
// the host from each step's gradient.
//
// Forward and backward mirror nn.Model step by step (see engine.go): a GEMM
// whose output feeds a LayerNorm also writes per-tile row statistics, which
// ln_apply merges with Chan's formula and applies, fused with GELU (LN1 of a
// block) or with the residual add (LN2 of a block). Bias and LayerNorm
// parameter gradients are deterministic two-stage column reductions. With
// the MSE objective the output LayerNorm, the loss and the LayerNorm's
// backward pass are one kernel, outnorm_mse (outnorm_mse.go): a warp per
// row reads the head's output and the targets once and writes dL/d(head
// output), the row losses and the column partials of the LayerNorm's
// gradients, which colsum_final and a fixed-order sum finish; the MSE
// term of mse+infonce is one block per row plus that sum (InfoNCE, see
// objective.go and kernels/infonce.cu: the [n, n] cosine matrix and the
// gradient through it are the SIMT GEMMs in float32 mode and the bf16
// tensor-core GEMMs in bf16 mode, the softmax statistics one block per row
// or column in double), and AdamW is one
// elementwise kernel over the flat buffers, bit-identical to nn.AdamW on
// float32. Two identical ForwardBackward calls give identical bits.
//
// Precision: [NewEngine] computes in float32 (the parity mode);
// [NewBF16Engine] in bf16 mixed precision with autocast's semantics
// (engine_bf16.go; docs/TRAINING.md, "Precision"). Both share the engine's
// structure: the forward pass calls linear, linearNorm and linearGELU
// (bf16 mode runs each residual block with blockForwardBF16), which choose
// the float32 SIMT GEMMs or the bf16 GEMMs of kernels/gemm_bf16.cu. The
// bf16 mode adds to the state allocation the weights' bf16 copy (2 bytes
// a parameter), which adamw_bf16 writes in the AdamW pass and
// SetParameters refreshes. The Linears' inputs are bf16 (written by the
// LayerNorms and GEMMs that produce them), and so are the blocks' Linears'
// outputs, as autocast's, which their LayerNorms read (ln_apply_bf16),
// saving only row means and rstds; the residual stream and the head's and
// input projection's outputs stay float32. Its backward pass (backwardBF16) runs one
// grad_rows pass in front of each Linear's two GEMMs: GELU', the
// LayerNorm's backward (xhat and LN1's output recomputed from the saved
// bf16 input), the bf16 output gradient those GEMMs read in place, dY^T X
// (the tn layout) and dY W (the nn layout, written or added to the
// residual stream's gradient), and the column sums of the bias and
// LayerNorm gradients, all from one read of the incoming gradient; no
// operand is transposed in memory.
// The bf16 GEMM launcher takes the wgmma+TMA kernels
// when the device loaded the sm_90a cubins (driver.Extended.KernelPath;
// the PTX build of those kernels traps) and the mma.sync fallback
// otherwise; it caches the operands' tensor maps (cleared when memory is
// freed), raises each kernel's dynamic shared memory once and launches
// the persistent kernels on min(multiprocessors, tiles) blocks. The
// first bf16 engine of a process checks both paths' kernels against a
// float64 product on a small problem of every kind (gemm_check.go): it
// falls back to mma.sync where only the wgmma kernels are wrong, and
// refuses to open where no path is right. Then the first engine of each
// precision checks a whole small engine against the float64 CPU engine
// (engine_check.go: nn.CheckEngine on a context of its own), and itself
// bit for bit (its resident rows against host batches, its pipelined
// steps against plain ones), and refuses to open where they disagree or
// a kernel of the check faults or cannot start.
//
// Retrieval: [Searcher] is package retrieval's exact search on the GPU:
// float16 tensor cores rank the keys, streamed in chunks, without forming
// the score matrix (kernels/search.cu); the GPU also computes each
// candidate's reference score as the host would (float64 products and
// sum), and the host's rule proves the answer exact from them
// (docs/RETRIEVAL.md, "Exact search on the GPU"). [Device.TopK] is the same search in the form of
// retrieval.TopK, which evaluation uses. The process's first search checks
// the GPU's against the CPU's on a small problem and, where it differs,
// searches on the CPU from then on (search_check.go).
//
// # Emulation
//
// With the tags cuda and cudaemu together nothing imports gorgonia.org/cu:
// cuda/driver runs on package cuda/emu, where the kernel sources are
// compiled as C++ for the host (emu.h maps the CUDA built-ins; the threads
// of a block run as fibers on one OS thread, __syncthreads switching
// between them), and the same engine, wrappers and tests run on the CPU. It checks the index math, bounds, barriers and the Go side's
// argument packing against the kernels' declared signatures; it cannot
// check GPU-only behaviour (the PTX JIT, warp scheduling, the memory model,
// the cu calls), which scripts/gpu-check.sh covers on a GPU host (with the
// binaries make build-cuda builds elsewhere).
//
// # Adding a kernel
//
// The one place is its source: write the `extern "C" __global__` function in
// kernels/NAME.cu (a new file opens with what it computes, shapes, launch
// and version), then, with the pinned toolkits (make toolchain, once)
//
//	make kernels          # kernels/ptx/NAME.ptx and kernels/sm90a/NAME.cubin, committed
//	go generate ./kernels # module list, cuda/launch, the emulator's table
//	make kernel-budgets   # its registers and shared memory into kernels/budgets.tsv
//
// and give it a row in kernels/sass.tsv naming the instructions its design
// rests on (- for none; docs/GPU-BUILD.md, "Static checks"); then call
// the generated launch.NAME from a wrapper in ops.go that checks
// the shapes (and a test beside the others in ops_test.go; the emulator and
// AddressSanitizer runs of make check-kernels pick it up by themselves).
// Parameter types the generator does not know fail it with the file and
// line (kernels/internal/gen/parse.go lists the known ones); the emulator's
// build checks at compile time that each signature is what the generator
// read, and a generator test checks the parameter sizes against the
// committed PTX. make check-generated fails when the committed generated
// files are stale.
package cuda
