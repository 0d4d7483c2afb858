//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"

	"github.com/dinoclip/dinoclip/nn"
)

// The check of a GPU engine at its first open.
//
// The GEMM check (gemm_check.go) proves the bf16 GEMMs; the rest of an
// engine is ordinary CUDA (the row kernels: LayerNorm, GELU, the fused
// backward row pass, the output LayerNorm and loss, InfoNCE, AdamW, the
// moving average, the gathers of resident rows, the casts) and a CUDA
// graph of the pipelined step, proven in the host emulator (which runs
// each block's threads in a random order) but not on every GPU and
// driver it will meet, and much of it on none yet. So the first engine
// of each precision a process opens first runs nn.CheckEngine on an
// engine of the check's shape (nn.CheckConfig, nn.CheckRows rows): its
// output, losses, gradients, an AdamW step, the moving average, resident
// rows and three pipelined steps (the first launch by launch, the second
// captured as a CUDA graph, the third its replay), against the float64
// CPU engine, with the precision's tolerances (nn.FP32Tolerances,
// nn.BF16Tolerances: the engine suite's), and the resident rows and the
// pipelined steps against the engine's own host batches and plain steps,
// bit for bit, as the emulator's tests hold them. Where it disagrees, a
// loss is not finite, a kernel faults (driver.IsKernelFault: on a GPU the
// fault takes the context with it) or the driver refuses a launch with the
// context sound after it, no engine of that precision opens in the
// process, and the error (nn.ErrFailedCheck) says what runs instead (fp32
// for bf16, the CPU for fp32). With DINOCLIP_CUDA_CHECK=warn (checkEnv) a
// disagreement is a warning instead (once, as the check ends), and the
// engine's description says it runs unchecked; a kernel that faults or
// cannot start still refuses it. A GPU too full for the check's resident
// rows leaves them, the pipelined steps and the bitwise comparisons out.
//
// The check runs on a CUDA context of its own, closed after it, so none of
// its allocations stays beside the engine's (training sizes its resident
// data by the memory left), a kernel that faults takes only that context
// with it, and a fault or a refused launch on it is the engine's kernels'.
// Any other error (out of memory, a copy that fails, a context lost to
// what is no kernel's fault) is the device's, not the engine's: the open
// fails with it, and no verdict is kept.
// It costs a context's creation and a few milliseconds of kernels, once
// per process and precision; a process that opens no engine (search,
// info) pays nothing.

// engineVerdict is the check's outcome for the process, by precision
// ([0] fp32, [1] bf16): every Device of a process opens the same GPU with
// the same kernels. An error of the device is no verdict and is not kept.
var engineVerdict struct {
	sync.Mutex
	engineOutcome
}

// engineOutcome is what engineVerdict keeps (apart from its lock, so that
// a test can set it aside).
type engineOutcome struct {
	done  [2]bool
	wrong [2]string
	// cannotRun says the engine's kernels cannot run here at all (a
	// fault, or a launch the driver refused): wrong then refuses the
	// engine whatever checkEnv says.
	cannotRun [2]bool
}

// openForCheck opens the check's Device: Open, but for tests that give it
// a driver that fails.
var openForCheck = Open

// checkEngine runs the check of engines of precision bf16 (or fp32) on a
// Device of its own the first time the process opens one, and returns the
// refusal where the check found its engine wrong (under checkEnv's warn,
// only where its kernels cannot run; a warning where they compute wrong
// values).
func checkEngine(bf16 bool) error {
	warn, err := checksWarn()
	if err != nil {
		return err
	}
	i := precisionIndex(bf16)
	engineVerdict.Lock()
	defer engineVerdict.Unlock()
	if !engineVerdict.done[i] {
		var r nn.CheckResult
		var cannotRun bool
		d, err := openForCheck()
		if err == nil {
			r, cannotRun, err = runEngineCheck(d, bf16)
		}
		if errors.Is(err, nn.ErrFailedCheck) {
			return err // (the bf16 GEMMs' refusal: gemm_check.go keeps it)
		}
		if err != nil {
			return fmt.Errorf("cuda: the %s engine's check on a CUDA context of its own: %w", precisionName(bf16), err)
		}
		if r.Unchecked != "" {
			slog.Info("cuda: the engine check left out what the GPU has no room for", "precision", precisionName(bf16), "unchecked", r.Unchecked)
		}
		slog.Debug("cuda: the engine check", "precision", precisionName(bf16), "worst", r.Worst, "at", r.WorstAt, "wrong", r.Wrong)
		if r.Wrong != "" && warn && !cannotRun {
			slog.Warn(fmt.Sprintf("cuda: the %s engine failed its check on this GPU; it runs anyway, unproven, as %s=warn asks", precisionName(bf16), checkEnv), "why", r.Wrong)
		}
		engineVerdict.done[i], engineVerdict.wrong[i], engineVerdict.cannotRun[i] = true, r.Wrong, cannotRun
	}
	wrong, runs := engineVerdict.wrong[i], !engineVerdict.cannotRun[i]
	switch {
	case wrong == "" || warn && runs:
		return nil
	case bf16:
		return refuseBF16(fmt.Sprintf("the bf16 engine failed its check on this GPU (%s)", wrong), runs)
	}
	return checkRefusal{fmt.Sprintf("cuda: the fp32 GPU engine failed its check on this GPU (%s): it is refused here; use --device cpu%s", wrong, warnHint(runs))}
}

// uncheckedEngine is why the engine of precision bf16 (or fp32) failed the
// process's check, where it did and the engine runs anyway (checkEnv);
// else "".
func uncheckedEngine(bf16 bool) string {
	engineVerdict.Lock()
	defer engineVerdict.Unlock()
	return engineVerdict.wrong[precisionIndex(bf16)]
}

// runEngineCheck builds an engine of the check's shape and precision on d
// and runs nn.CheckEngine on it, and closes d. Two errors are failed
// checks, not errors of the device: a kernel's fault
// (driver.IsKernelFault), which on a GPU takes the context with it, and a
// launch the driver refuses (launchError) with the context sound after
// it: on this context, which ran nothing else, the kernels are the
// engine's, and would fail so in every engine of that precision; for
// them, cannotRun is true.
func runEngineCheck(d *Device, bf16 bool) (r nn.CheckResult, cannotRun bool, err error) {
	if bf16 {
		// (Its own errors say how to go on, and a wgmma kernel that took
		// the context leaves the next open the mma.sync ones.)
		if err := d.do(d.checkBF16GEMMs); err != nil {
			return nn.CheckResult{}, false, errors.Join(err, d.Close())
		}
	}
	var release error // (of the engine's pipelined step: the device's Close frees the rest)
	e, err := buildEngine(d, nn.CheckConfig, bf16)
	if err == nil {
		tol := nn.FP32Tolerances
		if bf16 {
			tol = nn.BF16Tolerances
		}
		r, err = nn.CheckEngine(e, tol)
		release = d.do(e.releasePipe)
	} else {
		err = fmt.Errorf("building the engine: %w", err)
	}
	// A fault may surface only as the pipelined step is released (a step
	// still queued when a disagreement ended the check). A refused launch
	// is the kernel's where the context is sound after it; a launch also
	// reports what earlier work left (an ECC error, a context lost), which
	// is the device's.
	var fault error
	var sound, wgmma bool
	d.do(func() error {
		for _, x := range []error{err, release} {
			if fault == nil && d.drv.IsKernelFault(x) {
				fault = x
			}
		}
		sound, wgmma = fault == nil && d.drv.Sync() == nil, d.tc.wgmma
		return nil
	})
	closed := errors.Join(release, d.Close()) // (after a fault, they fail too and say no more)
	var launch launchError
	switch {
	case fault != nil:
		wrong := fmt.Sprintf("%v; the CUDA context was lost with it", fault)
		if bf16 && wgmma {
			wrong += "; where the fault was a wgmma GEMM's, DINOCLIP_CUDA_KERNELS=ptx runs the bf16 GEMMs on the mma.sync kernels"
		}
		return failedCheck(wrong, "a kernel's fault"), true, nil
	case errors.As(err, &launch) && sound:
		r, cannotRun = failedCheck(err.Error(), "a kernel that could not start"), true
	case err != nil || r.Wrong == "":
		return r, false, errors.Join(err, closed)
	}
	// A verdict: what releasing and closing the context reported does not
	// change it.
	if closed != nil {
		slog.Debug("cuda: closing the engine check's context", "err", closed)
	}
	return r, cannotRun, nil
}

// failedCheck is the result of a check that failed with no measured
// difference: wrong says why, at what failed.
func failedCheck(wrong, at string) nn.CheckResult {
	return nn.CheckResult{Wrong: wrong, Worst: math.Inf(1), WorstAt: at}
}

// checkRefusal is the error of an engine that a check of its process found
// wrong on this GPU (gemm_check.go, or the check above): it is
// nn.ErrFailedCheck, and its message says what runs instead.
type checkRefusal struct{ msg string }

func (r checkRefusal) Error() string { return r.msg }

// Is makes a refusal nn.ErrFailedCheck, without that error's text.
func (checkRefusal) Is(target error) bool { return target == nn.ErrFailedCheck }

// refuseBF16 is the refusal of the bf16 engine for why; runs says that
// what failed would run under checkEnv's warn (its values were wrong).
func refuseBF16(why string, runs bool) error {
	return checkRefusal{"cuda: " + why + ": the bf16 engine is refused here; use --precision fp32" + warnHint(runs)}
}

// warnHint is what a refusal adds where checkEnv's warn would run what it
// refuses (runs: its values were wrong, as far as the check went): the way
// to.
func warnHint(runs bool) string {
	if runs {
		return " (or " + checkEnv + "=warn, which runs it anyway where it can, unproven)"
	}
	return ""
}

// precisionIndex is engineVerdict's index of precision bf16 (or fp32).
func precisionIndex(bf16 bool) int {
	if bf16 {
		return 1
	}
	return 0
}

// precisionName is "bf16" or "fp32".
func precisionName(bf16 bool) string {
	if bf16 {
		return "bf16"
	}
	return "fp32"
}
