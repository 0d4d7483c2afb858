//go:build cuda

package cuda

import (
	"fmt"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"sort"

	"github.com/dinoclip/dinoclip/internal/enginehooks"
)

// The optional engine interfaces of package enginehooks: what only the GPU
// engine can measure (package bench reads them). Engine calls already end with a stream
// synchronisation, so these add no waiting to training.
var (
	_ enginehooks.Synchronizer        = (*Engine)(nil)
	_ enginehooks.DeviceNamer         = (*Engine)(nil)
	_ enginehooks.KernelTimer         = (*Engine)(nil)
	_ enginehooks.MemoryReporter      = (*Engine)(nil)
	_ enginehooks.CopyBandwidthProber = (*Engine)(nil)
	_ enginehooks.TopKer              = (*Engine)(nil)
)

// Synchronize waits until all work queued on the GPU has finished.
func (e *Engine) Synchronize() error { return e.dev.do(e.dev.sync) }

// DeviceName is the GPU's name, e.g. "NVIDIA H100 80GB HBM3".
func (e *Engine) DeviceName() string {
	var s string
	if err := e.dev.do(func() error { s = e.dev.drv.Name(); return nil }); err != nil {
		return "closed CUDA device"
	}
	return s
}

// TopK is Device.TopK on the engine's GPU (k at most MaxSearchK).
func (e *Engine) TopK(queries, keys []float32, nQueries, nKeys, dim, k int) ([]int32, []float32, error) {
	return e.dev.TopK(queries, keys, nQueries, nKeys, dim, k)
}

// ResetPeakMemory starts a new peak from the memory allocated now.
func (e *Engine) ResetPeakMemory() error {
	return e.dev.do(func() error { e.dev.peak = e.dev.inUse; return nil })
}

// PeakMemoryBytes is the most device memory this engine's allocations held
// since the last reset (the CUDA context and the loaded modules take some
// more, which the driver does not attribute).
func (e *Engine) PeakMemoryBytes() (int64, error) {
	var p int64
	err := e.dev.do(func() error { p = e.dev.peak; return nil })
	return p, err
}

// CopyBandwidth times device-to-device copies of bytes (rounded down to a
// multiple of 4) between two buffers and returns bytes read plus bytes
// written per second: the ceiling of the memory-bound kernels.
func (e *Engine) CopyBandwidth(bytes int64) (float64, error) {
	bytes = bytes / 4 * 4
	if bytes < 4 {
		return 0, fmt.Errorf("copy bandwidth: %d bytes", bytes)
	}
	const reps = 10
	var seconds float64
	d := e.dev
	err := d.do(func() error {
		src, err := d.alloc(bytes)
		if err != nil {
			return d.oom(err, bytes, "the copy-bandwidth probe", "", "")
		}
		defer d.free(src)
		dst, err := d.alloc(bytes)
		if err != nil {
			return d.oom(err, bytes, "the copy-bandwidth probe", "", "")
		}
		defer d.free(dst)
		if err := d.drv.Zero(src, bytes); err != nil {
			return err
		}
		if err := d.drv.CopyDevice(dst, src, bytes); err != nil { // warm-up
			return err
		}
		start, err := d.timedEvent()
		if err != nil {
			return err
		}
		defer d.drv.DestroyEvent(start)
		for range reps {
			if err := d.drv.CopyDevice(dst, src, bytes); err != nil {
				return err
			}
		}
		end, err := d.timedEvent()
		if err != nil {
			return err
		}
		defer d.drv.DestroyEvent(end)
		if err := d.sync(); err != nil {
			return err
		}
		seconds, err = d.drv.Elapsed(start, end)
		return err
	})
	if err != nil {
		return 0, err
	}
	if seconds <= 0 {
		return 0, fmt.Errorf("copy bandwidth: %d copies of %d bytes took %g s", reps, bytes, seconds)
	}
	return 2 * float64(bytes) * reps / seconds, nil
}

// ResetKernelTimings starts timing every kernel launch (an event pair
// around each), dropping what was recorded before.
func (e *Engine) ResetKernelTimings() error {
	d := e.dev
	return d.do(func() error {
		d.dropTimings()
		d.timing = true
		return nil
	})
}

// KernelTimings stops timing and returns the device time of the launches
// since the reset, one entry per kernel and shape, sorted by kernel name
// (the shapes of a kernel in the order of their first launch).
func (e *Engine) KernelTimings() ([]enginehooks.KernelTiming, error) {
	d := e.dev
	var out []enginehooks.KernelTiming
	err := d.do(func() error {
		d.timing = false
		defer d.dropTimings()
		if err := d.sync(); err != nil {
			return err
		}
		type key struct {
			k     launch.Kernel
			shape string
		}
		at := map[key]int{}
		for _, tl := range d.pending {
			if tl.end == nil {
				continue // its launch failed
			}
			s, err := d.drv.Elapsed(tl.start, tl.end)
			if err != nil {
				return fmt.Errorf("cuda: timing %s: %w", tl.k, err)
			}
			kk := key{tl.k, tl.w.shape}
			i, ok := at[kk]
			if !ok {
				i = len(out)
				at[kk] = i
				out = append(out, enginehooks.KernelTiming{Name: tl.k.String(), Shape: tl.w.shape, FLOPs: tl.w.flops, Bytes: tl.w.bytes})
			}
			out[i].Calls++
			out[i].Seconds += s
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
