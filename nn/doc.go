// Package nn is the reference implementation of the dinoclip projector: the
// original ProjectorWithResiduals (input_proj, residual blocks of
// Linear-LayerNorm-GELU-Linear-LayerNorm, hidden_norm, a GELU head and an
// output LayerNorm), its unit-norm MSE loss, the contrastive objective that
// adds CLIP's InfoNCE to it ([Objective], [InfoNCE]), PyTorch's AdamW update
// and the moving average of the weights ([BlendEMA]), on the CPU.
//
// The float32 matrix products go through internal/sgemm (packed, assembly
// microkernels, bits independent of the thread count), float32 AdamW,
// GELU, LayerNorm, the loss's rows and the column sums through
// internal/vec32 (vectorised, the same bits with and without assembly); the
// float64 oracle keeps its scalar loops and gonum's products. The CPU
// engine's forward-only calls reuse weights packed once for the GEMM while
// the parameters do not change.
//
// Everything is generic over float32 and float64. The float64 instantiation
// is the oracle: it is checked by finite differences and replayed against
// runs dumped from PyTorch. The float32 instantiation is the CPU engine used
// for training small configurations, and the reference every GPU kernel is
// compared against.
//
// Parameters live in one contiguous buffer laid out in the original
// state_dict order ([Layout]); every tensor is a named view into it, so a
// checkpoint is the buffer plus the layout, and an optimizer step is one pass
// over three buffers of the same length.
//
// [Engine] is what a trainer drives: forward+loss+backward on a batch, an
// AdamW step, and reading and writing parameters, gradients and moments. The
// CPU engine ([CPUEngine]) and the GPU engine implement it, so one test suite
// can run against both. Optional interfaces say what else an engine can do:
// keep the training data in its own memory and train on rows of it
// ([ResidentEngine]), run a whole step as one call whose loss is read a step
// later ([PipelinedEngine]), keep the moving average itself ([EMAEngine]).
//
// [CheckEngine] compares any engine with the float64 one on a small
// problem, with the [Tolerances] of its precision, and with itself bit for
// bit where those interfaces promise it: the GPU engine runs it at its
// first open in a process, and the suite on every engine.
package nn
