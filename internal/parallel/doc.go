// Package parallel runs the parts of a split loop on worker goroutines
// that outlive the loop, for the CPU engine's passes and matrix products
// (nn, internal/sgemm), of which a training step of a small model runs
// about a hundred, each a fraction of a millisecond.
//
// The caller and the workers take the parts in turn until none is left
// (each part once), rather than each goroutine being handed its own: on a
// machine whose cores are shared with other processes, a thread is often
// descheduled for milliseconds, and then the caller, done with its part,
// runs the part the absent worker would have run instead of waiting for
// it.
//
// Between loops a worker polls for the next one for pollFor before it
// blocks, and a caller polls for its loop's last part before it blocks:
// on a KVM guest a blocked thread took 50-65 µs to wake (its virtual CPU
// had halted), longer than most of a step's passes, so the helper woke
// when the caller had already run every part. On an idle 2-vCPU AMD EPYC
// (2026-12-02) polling for 200 µs took a training step of the small model
// at batch 256 from 7.3 to 5.1 ms and of the default model from 160 to
// 152 ms (batch 64) and 475 to 440 ms (batch 256), against blocking at
// once (same process, rounds interleaved). An earlier session on a loaded
// 2-core machine found polling slower (the poller took a core from the
// thread it waited for); pollFor bounds that cost to 200 µs a loop.
//
// Which goroutine runs a part never changes a result: callers split their
// work into parts that depend only on the sizes and the number of parts,
// and each part runs exactly once.
package parallel
