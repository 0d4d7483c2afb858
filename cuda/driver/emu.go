//go:build cuda && cudaemu

package driver

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/emu"
	"github.com/dinoclip/dinoclip/kernels"
)

// emuDriver runs the kernels compiled for the host (package cuda/emu): the
// tags cuda and cudaemu together build without gorgonia.org/cu, so the
// engine and its tests run on a machine without a GPU. It implements
// Extended: launches of any geometry and parameter size, tensor maps in the
// emulator's own layout, plain memory for "pinned" host memory, and graphs
// that record the stream's work during capture and replay it.
//
// The stream's work runs when it is enqueued, except after a copy between
// pinned memory and the device (UploadAsync, ToHostAsync): from there on
// the stream runs as late as CUDA allows (see lazy), so that a host that
// writes a pinned buffer before the copy from it is known done sends the
// device the new contents, or reads one before the copy into it is known
// done sees the old, as on a GPU, and the test of that host code fails
// here.
type emuDriver struct {
	names []string
	// maxShared is the dynamic shared memory allowance of each kernel
	// whose limit SetMaxDynamicShared set.
	maxShared map[int]int
	// capture collects the stream's work between BeginCapture and
	// EndCapture instead of running it.
	capture *emuGraph
	// pathKey is the compiled form the emulated device pretends to have
	// loaded: the best of kernels.Paths, or the one DINOCLIP_CUDA_KERNELS
	// names, as on a GPU. The emulator runs every kernel whatever it says;
	// the engine reads it to choose between the wgmma kernels and their
	// fallbacks, so that both choices can be tested here.
	pathKey string
	// lazy is the stream's enqueued work that has not run: it runs when
	// the host waits for it (Sync, WaitEvent on an event recorded in it,
	// a synchronous copy, Free, HostFree, a capture, Close), the latest a
	// GPU would have run it. Empty until an UploadAsync or a ToHostAsync
	// starts it.
	lazy []emuOp
	// pinned maps the address of each HostAlloc allocation to its length.
	pinned map[uintptr]int
	// thread is the OS thread that called Open (osThread), the only one
	// the driver takes calls from: on a GPU the context is current on that
	// thread alone, and a call from another fails.
	thread int
}

// emuOp is one piece of stream work; ev is the event it records, if any.
type emuOp struct {
	run func() error
	ev  *emuEvent
}

// emuEvent is an event: the wall-clock time at which the stream passed its
// last Record, and how many of its Records are still in the lazy queue.
type emuEvent struct {
	at      time.Time
	pending int
}

// emuGraph is a recorded sequence of stream operations; kinds name each
// one (its topology, for UpdateGraph), and evs holds the event of each
// Record (nil for the other operations), so that a launch of the graph
// queues its operations as the stream's own and WaitEvent on an event
// recorded in it waits for the graph up to there.
type emuGraph struct {
	ops   []func() error
	kinds []string
	evs   []*emuEvent
}

type emuGraphExec struct{ g *emuGraph }

// Open returns the emulated device; kernelNames are the entry points Launch
// will run (an unknown one fails at its launch).
func Open(kernelNames []string) (Driver, error) {
	if len(kernelNames) == 0 {
		return nil, errors.New("emulation: no kernels to load")
	}
	paths, err := kernels.Only(kernels.Paths(), os.Getenv("DINOCLIP_CUDA_KERNELS"))
	if err != nil {
		return nil, fmt.Errorf("emulation: %w", err)
	}
	if len(paths) == 0 {
		return nil, errors.New("emulation: no compiled kernels (run make kernels)")
	}
	if err := emu.CheckScheduleSeed(); err != nil {
		return nil, fmt.Errorf("emulation: %w", err)
	}
	return &emuDriver{names: kernelNames, maxShared: map[int]int{}, pathKey: paths[0].Key, pinned: map[uintptr]int{},
		thread: osThread()}, nil
}

// The emulated device is an H100 (limits SM90): 48 KiB of shared memory
// without opting in (defaultDynamicShared), 227 KiB with (static, from
// budgets.tsv, and dynamic together), portable clusters of up to 8.

func (d *emuDriver) Describe() string {
	return "host emulation of the CUDA kernels (no GPU; as if the " + d.pathKey + " kernels were loaded)"
}

func (d *emuDriver) KernelPath() string { return d.pathKey }

// emuMultiprocessors is an H100 SXM's count, the emulated device's.
const emuMultiprocessors = 132

func (*emuDriver) Multiprocessors() int { return emuMultiprocessors }

func (*emuDriver) Name() string { return "host emulation" }

// stream runs op now, records it while a capture is open, or queues it
// behind the lazy work.
func (d *emuDriver) stream(kind string, op func() error) error {
	return d.enqueue(kind, emuOp{run: op})
}

func (d *emuDriver) enqueue(kind string, op emuOp) error {
	if err := d.onOpenThread(kind); err != nil {
		return err
	}
	if d.capture != nil {
		d.capture.ops = append(d.capture.ops, op.run)
		d.capture.kinds = append(d.capture.kinds, kind)
		d.capture.evs = append(d.capture.evs, op.ev)
		return nil
	}
	if len(d.lazy) > 0 {
		if op.ev != nil {
			op.ev.pending++
		}
		d.lazy = append(d.lazy, op)
		return nil
	}
	return op.run()
}

// drain runs the lazy work in order until until returns true (nil: all of
// it). An error, as a kernel fault on a GPU, surfaces here and discards
// the work behind it.
func (d *emuDriver) drain(until func() bool) error {
	if err := d.onOpenThread("a wait for the stream"); err != nil {
		return err
	}
	for len(d.lazy) > 0 && (until == nil || !until()) {
		op := d.lazy[0]
		d.lazy = d.lazy[1:]
		if op.ev != nil {
			op.ev.pending--
		}
		if err := op.run(); err != nil {
			for _, rest := range d.lazy {
				if rest.ev != nil {
					rest.ev.pending--
				}
			}
			d.lazy = nil
			return err
		}
	}
	return nil
}

func (d *emuDriver) CopyDevice(dst, src uintptr, bytes int64) error {
	return d.stream("copy", func() error { emu.Copy(dst, src, bytes); return nil })
}

func (d *emuDriver) NewEvent() (Event, error) {
	if err := d.onOpenThread("NewEvent"); err != nil {
		return nil, err
	}
	return new(emuEvent), nil
}

func (d *emuDriver) Record(ev Event) error {
	e := ev.(*emuEvent)
	return d.enqueue("event", emuOp{run: func() error { e.at = time.Now(); return nil }, ev: e})
}

// WaitEvent runs the lazy work up to ev's last Record; during a capture it
// is refused, as the host cannot wait for work that has not run.
func (d *emuDriver) WaitEvent(ev Event) error {
	if d.capture != nil {
		return errors.New("emulation: WaitEvent during a stream capture")
	}
	e := ev.(*emuEvent)
	return d.drain(func() bool { return e.pending == 0 })
}

// Elapsed refuses an event the stream has not passed (CUDA's "not
// ready"): one never recorded, or whose last Record is still queued.
func (d *emuDriver) Elapsed(start, end Event) (float64, error) {
	if err := d.onOpenThread("Elapsed"); err != nil {
		return 0, err
	}
	for _, ev := range []*emuEvent{start.(*emuEvent), end.(*emuEvent)} {
		if ev.pending > 0 || ev.at.IsZero() {
			return 0, errors.New("emulation: Elapsed on an event the stream has not passed")
		}
	}
	return end.(*emuEvent).at.Sub(start.(*emuEvent).at).Seconds(), nil
}

func (d *emuDriver) DestroyEvent(Event) error { return d.onOpenThread("DestroyEvent") }

// Alloc and Free are refused during a capture, as CUDA refuses them on a
// capturing thread.
func (d *emuDriver) Alloc(bytes int64) (uintptr, error) {
	if err := d.onOpenThread("Alloc"); err != nil {
		return 0, err
	}
	if err := d.notCapturing("Alloc"); err != nil {
		return 0, err
	}
	return emu.Alloc(bytes)
}

func (d *emuDriver) Free(p uintptr) error {
	if err := d.onOpenThread("Free"); err != nil {
		return err // (nothing freed, as on a GPU)
	}
	if err := d.notCapturing("Free"); err != nil {
		return err
	}
	err := d.drain(nil)
	emu.Free(p)
	return err
}

// onOpenThread refuses call from another OS thread than Open's, as the
// GPU does (CUDA_ERROR_INVALID_CONTEXT): a caller must stay on a locked
// thread (runtime.LockOSThread) from Open to Close, which a goroutine the
// Go scheduler moves between threads does not. Every method that needs
// the context calls it (the stream's work through enqueue and drain);
// those that need none (the device's name and limits, a tensor map's
// encoding) do not.
func (d *emuDriver) onOpenThread(call string) error {
	if t := osThread(); t != d.thread {
		return fmt.Errorf("emulation: %s from OS thread %d, not %d, which opened the driver (a CUDA context is current on one thread: runtime.LockOSThread before Open)", call, t, d.thread)
	}
	return nil
}

// notCapturing refuses call during a capture: a call that waits for the
// stream, or one whose contract (ToDevice has read its source when it
// returns, ToHost has written its destination) a graph replayed later
// cannot keep. A graph that recorded one would replay a host buffer's
// contents of another time: the host-varying data a captured step must
// not hold.
func (d *emuDriver) notCapturing(call string) error {
	if d.capture != nil {
		return fmt.Errorf("emulation: %s during a stream capture", call)
	}
	return nil
}

func (d *emuDriver) Zero(p uintptr, bytes int64) error {
	if err := checkZero(bytes); err != nil {
		return fmt.Errorf("emulation: %w", err)
	}
	return d.stream("zero", func() error { emu.Zero(p, bytes); return nil })
}

// ToDevice refuses pinned memory, as the cu driver does: a copy from it
// would be asynchronous (UploadAsync).
func (d *emuDriver) ToDevice(dst uintptr, src unsafe.Pointer, bytes int64) error {
	if err := d.notCapturing("ToDevice"); err != nil {
		return err
	}
	if bytes > 0 && pinnedIn(d.pinned, unsafe.Slice((*byte)(src), bytes)) {
		return fmt.Errorf("emulation: ToDevice from %d bytes of pinned memory at %#x, which would not wait for the copy (use UploadAsync)", bytes, uintptr(src))
	}
	if err := d.drain(nil); err != nil {
		return err
	}
	emu.ToDevice(dst, src, bytes)
	return nil
}

func (d *emuDriver) ToHost(dst unsafe.Pointer, src uintptr, bytes int64) error {
	if err := d.notCapturing("ToHost"); err != nil {
		return err
	}
	if err := d.drain(nil); err != nil {
		return err
	}
	emu.ToHost(dst, src, bytes)
	return nil
}

func (d *emuDriver) kernel(k int) (string, error) {
	if k < 0 || k >= len(d.names) {
		return "", fmt.Errorf("emulation: kernel index %d of %d", k, len(d.names))
	}
	return d.names[k], nil
}

// Launch and LaunchEx check the launch when called, as CUDA does, and
// queue it; the kernel's own faults surface when it runs.
func (d *emuDriver) Launch(k, gx, gy, block int, args []uint64) error {
	name, err := d.kernel(k)
	if err != nil {
		return err
	}
	params, err := emu.Params(name, args) // a copy: the caller may reuse its slice before a replay
	if err != nil {
		return err
	}
	grid, blk, one := [3]int{gx, gy, 1}, [3]int{block, 1, 1}, [3]int{1, 1, 1}
	if err := emu.CheckLaunch(name, grid, blk, one, params); err != nil {
		return err
	}
	return d.stream("kernel "+name, func() error { return emu.LaunchEx(name, grid, blk, one, 0, params) })
}

func (d *emuDriver) Sync() error {
	if err := d.notCapturing("Sync"); err != nil {
		return err
	}
	return d.drain(nil)
}

func (d *emuDriver) MemInfo() (free, total int64, err error) {
	if err := d.onOpenThread("MemInfo"); err != nil {
		return 0, 0, err
	}
	l := emu.Limit()
	return l - emu.Used(), l, nil
}

func (*emuDriver) IsOutOfMemory(err error) bool { return errors.Is(err, emu.ErrOutOfMemory) }

// IsKernelFault: an emulated kernel that failed as it ran (an access out
// of its buffers, a barrier deadlock, a trap). The emulator goes on after
// it, but a GPU would not.
func (*emuDriver) IsKernelFault(err error) bool {
	var f *emu.KernelFault
	return errors.As(err, &f)
}

func (d *emuDriver) Close() error { return d.drain(nil) }

// ---- Extended -------------------------------------------------------------

func (d *emuDriver) LaunchEx(k int, cfg LaunchConfig, params [][]byte) error {
	name, err := d.kernel(k)
	if err != nil {
		return err
	}
	if err := cfg.Validate(SM90); err != nil {
		return fmt.Errorf("emulation: kernel %s: %w", name, err)
	}
	cluster := cfg.Cluster
	if cluster == [3]int{} {
		cluster = [3]int{1, 1, 1}
	}
	allowed, raised := d.maxShared[k]
	if err := checkShared(name, cfg.SharedBytes, allowed, raised); err != nil {
		return fmt.Errorf("emulation: %w", err)
	}
	if err := emu.CheckLaunch(name, cfg.Grid, cfg.Block, cluster, params); err != nil {
		return err
	}
	own := make([][]byte, len(params))
	for i, p := range params {
		own[i] = append([]byte(nil), p...)
	}
	return d.stream("kernel "+name, func() error {
		return emu.LaunchEx(name, cfg.Grid, cfg.Block, cluster, cfg.SharedBytes, own)
	})
}

func (d *emuDriver) SetMaxDynamicShared(k int, bytes int) error {
	if err := d.onOpenThread("SetMaxDynamicShared"); err != nil {
		return err
	}
	name, err := d.kernel(k)
	if err != nil {
		return err
	}
	static, _ := kernels.StaticShared(name)
	if err := SM90.CheckDynamicShared(bytes + static); err != nil {
		return fmt.Errorf("emulation: kernel %s (%d bytes of static shared memory): %w", name, static, err)
	}
	d.maxShared[k] = bytes
	return nil
}

func (*emuDriver) EncodeTensorMap(spec TensorMapSpec) (TensorMap, error) {
	if err := spec.Validate(); err != nil {
		return TensorMap{}, err
	}
	es := spec.ElemStrides
	if es == nil {
		es = make([]uint32, len(spec.Dims))
		for i := range es {
			es[i] = 1
		}
	}
	m, err := emu.EncodeTensorMap(emu.TensorMapLayout{
		ElemBytes: spec.DataType.Size(), SwizzleSpan: spec.Swizzle.Span(), NaNFill: spec.NaNFill,
		Base: spec.Base, Dims: spec.Dims, Strides: spec.Strides, Box: spec.Box, ElemStrides: es,
	})
	return TensorMap(m), err
}

// HostAlloc returns ordinary memory, recorded as pinned so that the copies
// check their buffers as the cu driver does.
func (d *emuDriver) HostAlloc(bytes int) ([]byte, error) {
	if err := d.onOpenThread("HostAlloc"); err != nil {
		return nil, err
	}
	if bytes < 1 {
		return nil, fmt.Errorf("emulation: host allocation of %d bytes", bytes)
	}
	b := make([]byte, bytes)
	d.pinned[uintptr(unsafe.Pointer(&b[0]))] = bytes
	return b, nil
}

// HostFree waits for the stream first: the queued copies may still use b.
func (d *emuDriver) HostFree(b []byte) error {
	if err := d.onOpenThread("HostFree"); err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("emulation: freeing no host allocation")
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	if n, ok := d.pinned[p]; !ok || n != len(b) {
		return fmt.Errorf("emulation: HostFree of %d bytes at %#x, which is not an allocation of HostAlloc", len(b), p)
	}
	err := d.drain(nil)
	delete(d.pinned, p)
	return err
}

func (d *emuDriver) ToHostAsync(dst []byte, src uintptr) error {
	if err := d.onOpenThread("ToHostAsync"); err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	if err := checkPinned("emulation", "ToHostAsync", "into", d.pinned, dst); err != nil {
		return err
	}
	op := func() error { emu.ToHost(unsafe.Pointer(&dst[0]), src, int64(len(dst))); return nil }
	if d.capture != nil {
		return d.stream("to-host", op)
	}
	// Queued, starting the lazy stream: dst holds the data only once the
	// host has waited for it, as with a GPU.
	d.lazy = append(d.lazy, emuOp{run: op})
	return nil
}

// UploadAsync queues the copy and runs the stream lazily from there on:
// the copy reads src when the host next waits for the stream, so a host
// that writes src before WaitEvent(done) has returned sends the new
// contents, as a GPU may.
func (d *emuDriver) UploadAsync(dst uintptr, src []byte, done Event) error {
	if err := d.onOpenThread("UploadAsync"); err != nil {
		return err
	}
	if err := d.notCapturing("UploadAsync"); err != nil {
		return err
	}
	if err := checkPinned("emulation", "UploadAsync", "from", d.pinned, src); err != nil {
		return err
	}
	d.lazy = append(d.lazy, emuOp{run: func() error { emu.ToDevice(dst, unsafe.Pointer(&src[0]), int64(len(src))); return nil }})
	if done == nil {
		return nil
	}
	return d.Record(done)
}

func (d *emuDriver) BeginCapture() error {
	if err := d.onOpenThread("BeginCapture"); err != nil {
		return err
	}
	if d.capture != nil {
		return errors.New("emulation: a stream capture is already open")
	}
	if err := d.drain(nil); err != nil {
		return err
	}
	d.capture = &emuGraph{}
	return nil
}

func (d *emuDriver) EndCapture() (Graph, error) {
	if err := d.onOpenThread("EndCapture"); err != nil {
		return nil, err
	}
	if d.capture == nil {
		return nil, errors.New("emulation: EndCapture without BeginCapture")
	}
	g := d.capture
	d.capture = nil
	return g, nil
}

func (d *emuDriver) Instantiate(g Graph) (GraphExec, error) {
	if err := d.onOpenThread("Instantiate"); err != nil {
		return nil, err
	}
	eg, ok := g.(*emuGraph)
	if !ok || eg == nil {
		return nil, fmt.Errorf("emulation: %T is not a graph of this driver", g)
	}
	return &emuGraphExec{g: eg}, nil
}

func (d *emuDriver) UpdateGraph(exec GraphExec, g Graph) error {
	if err := d.onOpenThread("UpdateGraph"); err != nil {
		return err
	}
	ex, ok1 := exec.(*emuGraphExec)
	eg, ok2 := g.(*emuGraph)
	if !ok1 || !ok2 || ex == nil || eg == nil {
		return fmt.Errorf("emulation: updating %T with %T", exec, g)
	}
	if len(ex.g.kinds) != len(eg.kinds) {
		return fmt.Errorf("emulation: graph update: %d operations, the instantiated graph has %d", len(eg.kinds), len(ex.g.kinds))
	}
	for i := range eg.kinds {
		if eg.kinds[i] != ex.g.kinds[i] {
			return fmt.Errorf("emulation: graph update: operation %d is %s, was %s", i, eg.kinds[i], ex.g.kinds[i])
		}
	}
	ex.g = eg
	return nil
}

func (d *emuDriver) LaunchGraph(exec GraphExec) error {
	if err := d.onOpenThread("LaunchGraph"); err != nil {
		return err
	}
	ex, ok := exec.(*emuGraphExec)
	if !ok || ex == nil {
		return fmt.Errorf("emulation: %T is not an instantiated graph of this driver", exec)
	}
	if d.capture != nil {
		return errors.New("emulation: launching a graph during a capture")
	}
	g := ex.g
	for i, op := range g.ops {
		run := func() error {
			if err := op(); err != nil {
				return fmt.Errorf("graph operation %d (%s): %w", i, g.kinds[i], err)
			}
			return nil
		}
		if err := d.enqueue(g.kinds[i], emuOp{run: run, ev: g.evs[i]}); err != nil {
			return err
		}
	}
	return nil
}

func (d *emuDriver) DestroyGraph(g Graph) error {
	if err := d.onOpenThread("DestroyGraph"); err != nil {
		return err
	}
	if _, ok := g.(*emuGraph); !ok {
		return fmt.Errorf("emulation: %T is not a graph of this driver", g)
	}
	return nil
}

func (d *emuDriver) DestroyGraphExec(exec GraphExec) error {
	if err := d.onOpenThread("DestroyGraphExec"); err != nil {
		return err
	}
	if _, ok := exec.(*emuGraphExec); !ok {
		return fmt.Errorf("emulation: %T is not an instantiated graph of this driver", exec)
	}
	return nil
}

var _ Extended = (*emuDriver)(nil)
