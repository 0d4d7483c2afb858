//go:build cuda && !cudaemu

package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver/libcuda"
	// gpuprobe's init runs before cu's and explains a missing GPU.
	_ "github.com/dinoclip/dinoclip/cuda/internal/gpuprobe"
	"github.com/dinoclip/dinoclip/kernels"
	"gorgonia.org/cu"
)

const gib = 1 << 30

// cuDriver runs on the GPU through gorgonia.org/cu. Importing cu runs its
// init, which calls cuInit and exits the process when there is no driver or
// no GPU: a binary with this file needs a GPU host to start at all (package
// gpuprobe, initialised first, says so in a clearer message).
type cuDriver struct {
	dev     cu.Device
	ctx     cu.CUContext
	stream  cu.Stream
	modules []cu.Module
	names   []string
	fns     []cu.Function
	desc    string
	devName string
	pathKey string // the loaded kernels.Path's Key
	sms     int    // multiprocessors
	ext     *cuExt // the Extended calls (cu_ext.go), set up at first use
}

// Open creates the context on GPU 0 (the first device CUDA_VISIBLE_DEVICES
// leaves) on the calling, locked, OS thread, the stream, and loads every
// module of package kernels; kernelNames are the entry points Launch will
// run, each of which must be in a module.
func Open(kernelNames []string) (Driver, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("cuda: counting GPUs: %w", err)
	}
	if n < 1 {
		return nil, errors.New("cuda: no CUDA GPU found")
	}
	dev, err := cu.GetDevice(0)
	if err != nil {
		return nil, fmt.Errorf("cuda: GPU 0: %w", err)
	}
	major, err := dev.Attribute(cu.ComputeCapabilityMajor)
	if err != nil {
		return nil, fmt.Errorf("cuda: GPU 0: %w", err)
	}
	minor, err := dev.Attribute(cu.ComputeCapabilityMinor)
	if err != nil {
		return nil, fmt.Errorf("cuda: GPU 0: %w", err)
	}
	if major < 8 {
		return nil, fmt.Errorf("cuda: GPU 0 has compute capability %d.%d; the kernels are built for 8.0 and later", major, minor)
	}
	sms, err := dev.Attribute(cu.MultiprocessorCount)
	if err != nil {
		return nil, fmt.Errorf("cuda: GPU 0: %w", err)
	}
	name, _ := dev.Name()
	total, _ := dev.TotalMem()
	// MakeContext creates the context and makes it current on this thread.
	ctx, err := dev.MakeContext(cu.SchedAuto)
	if err != nil {
		return nil, fmt.Errorf("cuda: creating a context on %s: %w", name, err)
	}
	c := &cuDriver{dev: dev, ctx: ctx, devName: name, names: kernelNames, sms: sms}
	path, err := c.load(major*10+minor, cu.Version())
	if err != nil {
		c.Close()
		return nil, err
	}
	c.desc = fmt.Sprintf("%s (compute capability %d.%d, %.1f GiB, CUDA driver %s, kernels: %s)",
		name, major, minor, float64(total)/gib, kernels.DriverString(cu.Version()), path)
	if c.stream, err = cu.MakeStream(cu.DefaultStream); err != nil {
		c.Close()
		return nil, fmt.Errorf("cuda: creating a stream: %w", err)
	}
	return c, nil
}

// loadedSaid is what the last "kernels loaded" line of the process said.
var loadedSaid atomic.Pointer[string]

// load loads the best compiled form of the kernels that the GPU (compute
// capability cc, major*10+minor) and the driver (driverVersion, as
// cuDriverGetVersion gives it) take: the sm_90a cubins on a Hopper GPU
// with a driver of CUDA 13.0 or later, else the PTX, which the driver
// JIT-compiles (kernels.Choose; DINOCLIP_CUDA_KERNELS=sm_90a or ptx pins
// one). It says which in one log line, with the reason for any fallback,
// looks up the kernels and returns the form's name.
func (c *cuDriver) load(cc, driverVersion int) (string, error) {
	paths, err := kernels.Only(kernels.Paths(), os.Getenv("DINOCLIP_CUDA_KERNELS"))
	if err != nil {
		return "", fmt.Errorf("cuda: %w", err)
	}
	path, notes, err := kernels.Choose(cc, driverVersion, paths, c.loadModules)
	if err != nil {
		return "", fmt.Errorf("cuda: %w", err)
	}
	attrs := []any{"gpu", c.devName, "kernels", path.Name}
	if len(notes) > 0 {
		attrs = append(attrs, "fallback", strings.Join(notes, "; "))
	}
	level, said := slog.LevelInfo, fmt.Sprint(attrs...)
	if prev := loadedSaid.Swap(&said); prev != nil && *prev == said {
		// Said for an earlier context of the process (the engine check
		// opens one of its own): once is enough.
		level = slog.LevelDebug
	}
	slog.Log(context.Background(), level, "cuda: kernels loaded", attrs...)
	where := map[string]int{}
	for i, m := range kernels.Modules {
		for _, k := range m.Kernels {
			where[k] = i
		}
	}
	for _, k := range c.names {
		i, ok := where[k]
		if !ok {
			return "", fmt.Errorf("cuda: kernel %s is in no module", k)
		}
		fn, err := c.modules[i].Function(k)
		if err != nil {
			return "", fmt.Errorf("cuda: kernel %s: %w", k, err)
		}
		c.fns = append(c.fns, fn)
	}
	c.pathKey = path.Key
	return path.Name, nil
}

// loadModules loads every module's image of path p into c.modules (in the
// order of kernels.Modules); when one fails it unloads the others, so that
// the next path starts clean.
func (c *cuDriver) loadModules(p kernels.Path) error {
	var mods []cu.Module
	unload := func() {
		for _, m := range mods {
			m.Unload()
		}
	}
	for _, m := range kernels.Modules {
		img, err := p.Image(m.Name)
		if err != nil {
			unload()
			return err
		}
		mod, err := cu.LoadData(string(img))
		if err != nil {
			unload()
			return fmt.Errorf("module %s: %w%s", m.Name, err, jitLog(string(img)))
		}
		mods = append(mods, mod)
	}
	c.modules = mods
	return nil
}

// jitLog loads src (PTX or a cubin) again with an error log buffer and
// returns the driver's message, for a module that failed to load.
func jitLog(src string) string {
	opt := &cu.JITErrorLogBuffer{Buffer: make([]byte, 8192)}
	if _, err := cu.LoadDataEx(src, opt); err == nil {
		return ""
	}
	msg := strings.TrimRight(string(opt.Buffer), "\x00")
	if msg == "" {
		return ""
	}
	return ": " + msg
}

func (c *cuDriver) Describe() string { return c.desc }

func (c *cuDriver) Name() string { return c.devName }

func (c *cuDriver) CopyDevice(dst, src uintptr, bytes int64) error {
	return kernelFault(cu.MemcpyDtoDAsync(cu.DevicePtr(dst), cu.DevicePtr(src), bytes, c.stream))
}

func (c *cuDriver) NewEvent() (Event, error) {
	ev, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		return nil, err
	}
	return &ev, nil
}

func (c *cuDriver) Record(ev Event) error { return kernelFault(ev.(*cu.Event).Record(c.stream)) }

func (c *cuDriver) WaitEvent(ev Event) error { return kernelFault(ev.(*cu.Event).Synchronize()) }

func (c *cuDriver) Elapsed(start, end Event) (float64, error) {
	ms, err := start.(*cu.Event).Elapsed(*end.(*cu.Event))
	return ms / 1e3, err
}

func (c *cuDriver) DestroyEvent(ev Event) error { return cu.DestroyEvent(ev.(*cu.Event)) }

func (c *cuDriver) Alloc(bytes int64) (uintptr, error) {
	p, err := cu.MemAlloc(bytes)
	return uintptr(p), kernelFault(err)
}

func (c *cuDriver) Free(p uintptr) error { return cu.MemFree(cu.DevicePtr(p)) }

func (c *cuDriver) Zero(p uintptr, bytes int64) error {
	if err := checkZero(bytes); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return kernelFault(cu.MemsetD32Async(cu.DevicePtr(p), 0, bytes/4, c.stream))
}

// ToDevice copies from pageable Go memory: the driver has read src when the
// call returns (it stages pageable memory), so src is free for reuse. From
// pinned memory the same call returns before the copy has read src, so it
// is refused (UploadAsync is the asynchronous copy).
func (c *cuDriver) ToDevice(dst uintptr, src unsafe.Pointer, bytes int64) error {
	if c.ext != nil && bytes > 0 && pinnedIn(c.ext.pinned, unsafe.Slice((*byte)(src), bytes)) {
		return fmt.Errorf("cuda: ToDevice from %d bytes of pinned memory at %#x, which would not wait for the copy (use UploadAsync)", bytes, uintptr(src))
	}
	return kernelFault(cu.MemcpyHtoDAsync(cu.DevicePtr(dst), src, bytes, c.stream))
}

// ToHost copies into pageable Go memory: the call returns when the copy is
// done.
func (c *cuDriver) ToHost(dst unsafe.Pointer, src uintptr, bytes int64) error {
	return kernelFault(cu.MemcpyDtoHAsync(dst, cu.DevicePtr(src), bytes, c.stream))
}

func (c *cuDriver) Launch(k, gx, gy, block int, args []uint64) error {
	if k < 0 || k >= len(c.fns) {
		return fmt.Errorf("cuda: kernel %d of %d", k, len(c.fns))
	}
	if err := kernels.CheckParams(c.names[k], len(args), nil); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	return kernelFault(c.fns[k].Launch(gx, gy, 1, block, 1, 1, 0, c.stream, params))
}

func (c *cuDriver) Sync() error { return kernelFault(c.stream.Synchronize()) }

// kernelFault says what the driver's bare names of a kernel's asynchronous
// fault mean here, from gorgonia/cu's calls or package libcuda's. A fault
// surfaces at the next call that touches the stream (and, the context being
// lost, at every later call), so the call that reports it names no culprit:
// with CUDA_LAUNCH_BLOCKING=1 each launch waits for its kernel and reports
// its own fault.
func kernelFault(err error) error {
	const why = "; the GPU context is lost. The fault surfaces at the next call that touches the stream, not necessarily the faulting kernel's: rerun with CUDA_LAUNCH_BLOCKING=1 to have it reported at the launch of the kernel that faulted"
	switch {
	case hasCode(err, cu.LaunchFailed):
		return fmt.Errorf("%w (a kernel trapped: a tensor-core kernel's barrier wait passed 10 s (a stalled pipeline), or an sm_90a kernel ran without its Hopper body%s)", err, why)
	case hasCode(err, cu.IllegalAddress):
		return fmt.Errorf("%w (a kernel read or wrote outside its buffers%s)", err, why)
	}
	return err
}

func (c *cuDriver) MemInfo() (free, total int64, err error) { return cu.MemInfo() }

func (c *cuDriver) IsOutOfMemory(err error) bool { return errors.Is(err, cu.OutOfMemory) }

// IsKernelFault: the driver's errors of a kernel that faulted as it ran,
// each of which leaves the context unusable. Errors that do too but are
// not a kernel's (an uncorrectable ECC error, a GPU that fell off the bus)
// are not among them.
func (c *cuDriver) IsKernelFault(err error) bool {
	return hasCode(err, cu.IllegalAddress) || hasCode(err, cu.MisalignedAddress) ||
		hasCode(err, cu.InvalidAddressSpace) || hasCode(err, cu.IllegalInstruction) ||
		hasCode(err, cu.InvalidPc) || hasCode(err, cu.HardwareStackError) ||
		hasCode(err, cu.Assert) || hasCode(err, cu.LaunchFailed) || hasCode(err, cu.LaunchTimeout)
}

// hasCode says whether err is, or wraps, the driver's result r, from
// gorgonia/cu's calls or package libcuda's.
func hasCode[R interface {
	error
	~int
}](err error, r R) bool {
	var le *libcuda.Error
	return errors.Is(err, r) || errors.As(err, &le) && le.Code == int(r)
}

// Close releases the stream, the modules and the context.
func (c *cuDriver) Close() error {
	var errs []error
	var none cu.Stream
	if c.stream != none {
		errs = append(errs, c.stream.Synchronize(), c.stream.Destroy())
	}
	for _, m := range c.modules {
		errs = append(errs, m.Unload())
	}
	c.modules = nil
	var empty cu.CUContext
	if c.ctx != empty {
		errs = append(errs, c.ctx.Destroy())
	}
	return errors.Join(errs...)
}
