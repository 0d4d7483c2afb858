//go:build cuda

package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/kernels"
)

// Device is one GPU with its context, stream and loaded kernels. All of its
// work runs on one goroutine locked to an OS thread (the context's thread);
// the methods may be called from any goroutine and are serialised.
type Device struct {
	mu     sync.Mutex
	work   chan func()
	closed bool
	drv    driver.Driver
	allocs map[uintptr]int64 // live allocations, freed by Close

	inUse, peak int64 // bytes of the live allocations, and their peak

	tc tensorCores // the tensor-core kernels' state (gemm_bf16.go)

	timing  bool          // record an event pair around every launch
	pending []timedLaunch // launches recorded since the timings were reset
}

// work describes one launch for the kernel timings: its problem size in
// words and the FLOPs (compute-bound kernels) or the fewest bytes it must
// move (memory-bound kernels) of one launch.
type work struct {
	shape        string
	flops, bytes float64
}

type timedLaunch struct {
	k          launch.Kernel
	w          work
	start, end driver.Event
}

// errClosed is returned by a closed Device.
var errClosed = errors.New("cuda: device is closed")

// Open starts the worker thread, creates the context on GPU 0 (the first
// device CUDA_VISIBLE_DEVICES leaves) and loads the kernels.
func Open() (*Device, error) {
	d := &Device{work: make(chan func()), allocs: map[uintptr]int64{}}
	ready := make(chan error)
	go d.run(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// run is the worker: it owns the OS thread for the device's lifetime. It
// never unlocks the thread, so the thread ends with the goroutine, taking
// the (destroyed) context's thread state with it.
func (d *Device) run(ready chan<- error) {
	runtime.LockOSThread()
	drv, err := driver.Open(launch.Names())
	if err != nil {
		ready <- err
		return
	}
	d.drv = drv
	d.initTensorCores()
	ready <- nil
	for f := range d.work {
		f()
	}
}

// do runs f on the worker thread and returns its error.
func (d *Device) do(f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	done := make(chan error, 1)
	d.work <- func() { done <- f() }
	return <-done
}

// String describes the device (name, compute capability, memory), and the
// fallbacks of its checks: the GEMMs' where the wgmma ones failed
// (gemm_check.go), the search's where the GPU's failed (search_check.go);
// and what runs though it failed its check (DINOCLIP_CUDA_CHECK=warn).
func (d *Device) String() string {
	var s string
	err := d.do(func() error {
		s = d.drv.Describe()
		if d.tc.fallback != "" {
			s += "; bf16 GEMMs on the mma.sync kernels: the wgmma ones failed their check (" + d.tc.fallback + ")"
		}
		if d.tc.unchecked != "" {
			s += "; UNCHECKED bf16 GEMMs: they failed their check (" + d.tc.unchecked + ") and run as " + checkEnv + "=warn asks"
		}
		return nil
	})
	if err != nil {
		return "closed CUDA device"
	}
	// (Not on the worker thread: a check under way holds the verdict's
	// lock while it runs there.)
	switch failed, onGPU := searchFailed(); {
	case failed != "" && onGPU:
		s += "; UNCHECKED GPU search: it failed its check (" + failed + ") and runs as " + checkEnv + "=warn asks"
	case failed != "":
		s += "; searches on the CPU: the GPU search failed its check (" + failed + ")"
	}
	return s
}

// Close frees every allocation, destroys the context and stops the worker.
// Closing twice is not an error.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	done := make(chan error, 1)
	d.work <- func() {
		errs := []error{d.drv.Sync()}
		d.dropTimings()
		for p := range d.allocs {
			errs = append(errs, d.drv.Free(p))
		}
		clear(d.allocs)
		d.inUse = 0
		errs = append(errs, d.drv.Close())
		done <- errors.Join(errs...)
	}
	err := <-done
	close(d.work)
	d.closed = true
	return err
}

// The methods below run on the worker thread (inside do).

// alloc allocates bytes of device memory.
func (d *Device) alloc(bytes int64) (uintptr, error) {
	p, err := d.drv.Alloc(bytes)
	if err != nil {
		return 0, err
	}
	d.allocs[p] = bytes
	d.inUse += bytes
	d.peak = max(d.peak, d.inUse)
	return p, nil
}

// free waits for the stream (no kernel may still use the memory) and
// frees p.
func (d *Device) free(p uintptr) error {
	if p == 0 {
		return nil
	}
	serr := d.drv.Sync()
	clear(d.tc.maps) // no tensor map may outlive its memory
	d.inUse -= d.allocs[p]
	delete(d.allocs, p)
	return errors.Join(serr, d.drv.Free(p))
}

// launchError is a failure to start a kernel: the driver refused its
// launch, its shared memory limit or its tensor map. Where the context is
// sound after it (a Sync succeeds), it is the kernel's own, and the
// first-use checks (gemm_check.go, search_check.go, engine_check.go) take
// it for a verdict on the kernel; a launch also reports what earlier work
// left (a fault, an ECC error), which is not.
type launchError struct{ err error }

func (e launchError) Error() string { return e.err.Error() }
func (e launchError) Unwrap() error { return e.err }

// launcher is the device as the generated launch functions' Launcher, with
// the description of the launches it makes for the kernel timings.
type launcher struct {
	d *Device
	w work
}

// with returns the Launcher whose launches w describes.
func (d *Device) with(w work) launch.Launcher { return launcher{d, w} }

// grid is the launch configuration of a grid (gx, gy) of blocks of
// `threads` threads, the shape of every kernel of the FP32 engine.
func grid(gx, gy int) driver.LaunchConfig {
	return driver.LaunchConfig{Grid: [3]int{gx, gy, 1}, Block: [3]int{threads, 1, 1}}
}

// Launch runs kernel k with cfg and the packed parameters on the device's
// stream (on the worker thread). A launch that the basic driver call can
// make (a 2-D grid, a 1-D block, no cluster, no dynamic shared memory,
// parameters of at most 8 bytes) goes through Driver.Launch; any other needs
// a driver with the extended calls.
func (l launcher) Launch(k launch.Kernel, cfg driver.LaunchConfig, params [][]byte) error {
	d := l.d
	if k < 0 || k >= launch.NumKernels {
		return fmt.Errorf("cuda: launch of kernel %d of %d", k, launch.NumKernels)
	}
	if err := kernels.CheckParams(k.String(), len(params), func(i int) int { return len(params[i]) }); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	basic := cfg.Cluster == [3]int{} && cfg.SharedBytes == 0 && cfg.Grid[2] == 1 && cfg.Block[1] == 1 && cfg.Block[2] == 1
	for _, p := range params {
		basic = basic && len(p) <= 8
	}
	g := cfg.Grid
	if g[0] < 1 || g[1] < 1 || g[2] < 1 || g[0] > maxGridX || g[1] > maxGridY || g[2] > maxGridY {
		return fmt.Errorf("cuda: %s: grid %d x %d x %d out of range", k, g[0], g[1], g[2])
	}
	var tl timedLaunch
	if d.timing {
		tl = timedLaunch{k: k, w: l.w}
		var err error
		if tl.start, err = d.timedEvent(); err != nil {
			return err
		}
		d.pending = append(d.pending, tl) // the start event is freed by the next reset
	}
	var err error
	if basic {
		// One value per parameter in the low bytes of a uint64, as the
		// driver reads as many bytes as the parameter has.
		words := make([]uint64, len(params))
		for i, p := range params {
			var w [8]byte
			copy(w[:], p)
			words[i] = binary.LittleEndian.Uint64(w[:])
		}
		err = d.drv.Launch(int(k), g[0], g[1], cfg.Block[0], words)
	} else if ext, ok := d.drv.(driver.Extended); ok {
		err = ext.LaunchEx(int(k), cfg, params)
	} else {
		err = errors.New("the launch needs the extended driver calls, which this driver lacks")
	}
	if err != nil {
		return launchError{fmt.Errorf("cuda: launch %s (grid %v, block %v): %w", k, cfg.Grid, cfg.Block, err)}
	}
	if d.timing {
		end, err := d.timedEvent()
		if err != nil {
			return err
		}
		d.pending[len(d.pending)-1].end = end
	}
	return nil
}

// timedEvent creates an event and records it on the stream.
func (d *Device) timedEvent() (driver.Event, error) {
	ev, err := d.drv.NewEvent()
	if err != nil {
		return nil, fmt.Errorf("cuda: creating an event: %w", err)
	}
	if err := d.drv.Record(ev); err != nil {
		d.drv.DestroyEvent(ev)
		return nil, fmt.Errorf("cuda: recording an event: %w", err)
	}
	return ev, nil
}

// dropTimings frees the events of the recorded launches.
func (d *Device) dropTimings() {
	for _, tl := range d.pending {
		for _, ev := range []driver.Event{tl.start, tl.end} {
			if ev != nil {
				d.drv.DestroyEvent(ev)
			}
		}
	}
	d.pending = nil
}

func (d *Device) sync() error {
	if err := d.drv.Sync(); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return nil
}

// buf is a typed view of device memory: n elements of T at p. The zero buf
// is the null pointer (an absent optional argument).
type buf[T any] struct {
	p uintptr
	n int
}

// ptr and cptr are b as a kernel's pointer parameter (T* and const T*).
func (b buf[T]) ptr() launch.Ptr[T]       { return launch.Ptr[T](b.p) }
func (b buf[T]) cptr() launch.ConstPtr[T] { return launch.ConstPtr[T](b.p) }

func sizeOf[T any]() int {
	var z T
	return int(unsafe.Sizeof(z))
}

// at returns the n elements from element off. Out of range is a bug of this
// package, not an input error, so it panics.
func (b buf[T]) at(off, n int) buf[T] {
	if off < 0 || n < 0 || off+n > b.n {
		panic(fmt.Sprintf("cuda: view [%d, %d) of a buffer of %d", off, off+n, b.n))
	}
	return buf[T]{p: b.p + uintptr(off*sizeOf[T]()), n: n}
}

// upload copies src into the start of dst.
func upload[T any](d *Device, dst buf[T], src []T) error {
	if len(src) > dst.n {
		return fmt.Errorf("cuda: upload of %d values into a buffer of %d", len(src), dst.n)
	}
	if len(src) == 0 {
		return nil
	}
	if err := d.drv.ToDevice(dst.p, unsafe.Pointer(&src[0]), int64(len(src)*sizeOf[T]())); err != nil {
		return fmt.Errorf("cuda: copy to the GPU: %w", err)
	}
	return nil
}

// download copies the start of src into dst and waits for it.
func download[T any](d *Device, dst []T, src buf[T]) error {
	if len(dst) > src.n {
		return fmt.Errorf("cuda: download of %d values from a buffer of %d", len(dst), src.n)
	}
	if len(dst) == 0 {
		return nil
	}
	if err := d.drv.ToHost(unsafe.Pointer(&dst[0]), src.p, int64(len(dst)*sizeOf[T]())); err != nil {
		return fmt.Errorf("cuda: copy from the GPU: %w", err)
	}
	return d.sync()
}

// arena carves aligned sub-buffers out of one allocation. With base 0 it
// only measures.
type arena struct {
	base uintptr
	off  int64
}

const align = 256

func carve[T any](a *arena, n int) buf[T] {
	a.off = (a.off + align - 1) / align * align
	b := buf[T]{p: a.base + uintptr(a.off), n: n}
	a.off += int64(n * sizeOf[T]())
	return b
}

const gib = 1 << 30

// oom turns an out-of-memory error of an allocation of bytes into
// "out of GPU memory: WHAT needs X GiB[ for FOR] (F GiB free of T GiB[; NOTE])".
func (d *Device) oom(err error, bytes int64, what, forWhat, note string) error {
	if forWhat != "" {
		forWhat = " for " + forWhat
	}
	if !d.drv.IsOutOfMemory(err) {
		return fmt.Errorf("cuda: allocating %.2f GiB%s (%s): %w", float64(bytes)/gib, forWhat, what, err)
	}
	var info string
	if free, total, ierr := d.drv.MemInfo(); ierr == nil {
		info = fmt.Sprintf("%.2f GiB free of %.2f GiB", float64(free)/gib, float64(total)/gib)
	}
	if note != "" {
		if info != "" {
			info += "; "
		}
		info += note
	}
	if info != "" {
		info = " (" + info + ")"
	}
	return fmt.Errorf("out of GPU memory: %s needs %.2f GiB%s%s", what, float64(bytes)/gib, forWhat, info)
}
