//go:build cuda && cudaemu

package driver

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/emu"
)

// emuDriver runs the kernels compiled for the host (package cuda/emu): the
// tags cuda and cudaemu together build without gorgonia.org/cu, so the
// engine and its tests run on a machine without a GPU. Everything is
// synchronous. It implements Extended: launches of any geometry and
// parameter size, tensor maps in the emulator's own layout, plain memory
// for "pinned" host memory, and graphs that record the stream's work
// during capture and replay it.
type emuDriver struct {
	names []string
	// maxShared is each kernel's dynamic shared memory allowance above the
	// default 48 KiB (SetMaxDynamicShared).
	maxShared map[int]int
	// capture collects the stream's work between BeginCapture and
	// EndCapture instead of running it.
	capture *emuGraph
}

// emuGraph is a recorded sequence of stream operations; kinds name each
// one (its topology, for UpdateGraph).
type emuGraph struct {
	ops   []func() error
	kinds []string
}

type emuGraphExec struct{ g *emuGraph }

// Open returns the emulated device; kernelNames are the entry points Launch
// will run (an unknown one fails at its launch).
func Open(kernelNames []string) (Driver, error) {
	if len(kernelNames) == 0 {
		return nil, errors.New("emulation: no kernels to load")
	}
	return &emuDriver{names: kernelNames, maxShared: map[int]int{}}, nil
}

// The emulated device's limits, as an H100's: 48 KiB of dynamic shared
// memory without opting in, 227 KiB with; portable clusters of up to 8.
const (
	defaultDynamicShared = 48 << 10
	maxDynamicShared     = 227 << 10
	maxClusterBlocks     = 8
)

func (*emuDriver) Describe() string { return "host emulation of the CUDA kernels (no GPU)" }

func (*emuDriver) Name() string { return "host emulation" }

// stream runs op now, or records it while a capture is open.
func (d *emuDriver) stream(kind string, op func() error) error {
	if d.capture != nil {
		d.capture.ops = append(d.capture.ops, op)
		d.capture.kinds = append(d.capture.kinds, kind)
		return nil
	}
	return op()
}

func (d *emuDriver) CopyDevice(dst, src uintptr, bytes int64) error {
	return d.stream("copy", func() error { emu.Copy(dst, src, bytes); return nil })
}

// An event is the wall-clock time at which it was recorded.
func (*emuDriver) NewEvent() (Event, error) { return new(time.Time), nil }

func (d *emuDriver) Record(ev Event) error {
	return d.stream("event", func() error { *ev.(*time.Time) = time.Now(); return nil })
}

func (*emuDriver) Elapsed(start, end Event) (float64, error) {
	return end.(*time.Time).Sub(*start.(*time.Time)).Seconds(), nil
}

func (*emuDriver) DestroyEvent(Event) error { return nil }

func (*emuDriver) Alloc(bytes int64) (uintptr, error) { return emu.Alloc(bytes) }

func (*emuDriver) Free(p uintptr) error { emu.Free(p); return nil }

func (d *emuDriver) Zero(p uintptr, bytes int64) error {
	return d.stream("zero", func() error { emu.Zero(p, bytes); return nil })
}

func (d *emuDriver) ToDevice(dst uintptr, src unsafe.Pointer, bytes int64) error {
	return d.stream("to-device", func() error { emu.ToDevice(dst, src, bytes); return nil })
}

func (d *emuDriver) ToHost(dst unsafe.Pointer, src uintptr, bytes int64) error {
	return d.stream("to-host", func() error { emu.ToHost(dst, src, bytes); return nil })
}

func (d *emuDriver) kernel(k int) (string, error) {
	if k < 0 || k >= len(d.names) {
		return "", fmt.Errorf("emulation: kernel index %d of %d", k, len(d.names))
	}
	return d.names[k], nil
}

func (d *emuDriver) Launch(k, gx, gy, block int, args []uint64) error {
	name, err := d.kernel(k)
	if err != nil {
		return err
	}
	args = append([]uint64(nil), args...) // the caller may reuse its slice before a replay
	return d.stream("kernel "+name, func() error { return emu.Launch(name, gx, gy, block, args) })
}

func (d *emuDriver) Sync() error {
	if d.capture != nil {
		return errors.New("emulation: Sync during a stream capture")
	}
	return nil
}

func (*emuDriver) MemInfo() (free, total int64, err error) {
	l := emu.Limit()
	return l - emu.Used(), l, nil
}

func (*emuDriver) IsOutOfMemory(err error) bool { return errors.Is(err, emu.ErrOutOfMemory) }

func (*emuDriver) Close() error { return nil }

// ---- Extended -------------------------------------------------------------

func (d *emuDriver) LaunchEx(k int, cfg LaunchConfig, params [][]byte) error {
	name, err := d.kernel(k)
	if err != nil {
		return err
	}
	cluster := cfg.Cluster
	if cluster == [3]int{} {
		cluster = [3]int{1, 1, 1}
	}
	blocks := 1
	for i := 0; i < 3; i++ {
		if cfg.Grid[i] < 1 || cfg.Block[i] < 1 || cluster[i] < 1 {
			return fmt.Errorf("emulation: kernel %s: grid %v, block %v, cluster %v: every dimension must be at least 1", name, cfg.Grid, cfg.Block, cfg.Cluster)
		}
		if cfg.Grid[i]%cluster[i] != 0 {
			return fmt.Errorf("emulation: kernel %s: grid %v is not a multiple of cluster %v", name, cfg.Grid, cluster)
		}
		blocks *= cluster[i]
	}
	if blocks > maxClusterBlocks {
		return fmt.Errorf("emulation: kernel %s: cluster of %d blocks; at most %d", name, blocks, maxClusterBlocks)
	}
	if cfg.Block[2] > 64 || cfg.Grid[1] > 65535 || cfg.Grid[2] > 65535 {
		return fmt.Errorf("emulation: kernel %s: grid %v or block %v beyond CUDA's limits", name, cfg.Grid, cfg.Block)
	}
	allowed := max(defaultDynamicShared, d.maxShared[k])
	if cfg.SharedBytes < 0 || cfg.SharedBytes > allowed {
		return fmt.Errorf("emulation: kernel %s: %d bytes of dynamic shared memory; allowed %d (SetMaxDynamicShared raises it)", name, cfg.SharedBytes, allowed)
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
	name, err := d.kernel(k)
	if err != nil {
		return err
	}
	if bytes < 0 || bytes > maxDynamicShared {
		return fmt.Errorf("emulation: kernel %s: %d bytes of dynamic shared memory; the device has %d", name, bytes, maxDynamicShared)
	}
	d.maxShared[k] = bytes
	return nil
}

// elemBytes is the size of one element of each tensor-map data type.
var elemBytes = map[TensorDataType]int{TensorFloat16: 2, TensorFloat32: 4, TensorBFloat16: 2}

var swizzleSpan = map[Swizzle]int{SwizzleNone: 0, Swizzle32B: 32, Swizzle64B: 64, Swizzle128B: 128}

func (*emuDriver) EncodeTensorMap(spec TensorMapSpec) (TensorMap, error) {
	if err := checkTensorMap(spec); err != nil {
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
		ElemBytes: elemBytes[spec.DataType], SwizzleSpan: swizzleSpan[spec.Swizzle], NaNFill: spec.NaNFill,
		Base: spec.Base, Dims: spec.Dims, Strides: spec.Strides, Box: spec.Box, ElemStrides: es,
	})
	return TensorMap(m), err
}

// checkTensorMap applies cuTensorMapEncodeTiled's rules to spec.
func checkTensorMap(s TensorMapSpec) error {
	eb, ok := elemBytes[s.DataType]
	if !ok {
		return fmt.Errorf("tensor map: data type %d is not one of float16, float32, bfloat16", s.DataType)
	}
	span, ok := swizzleSpan[s.Swizzle]
	if !ok {
		return fmt.Errorf("tensor map: swizzle %d is not one of none, 32B, 64B, 128B", s.Swizzle)
	}
	r := len(s.Dims)
	if r < 1 || r > 5 {
		return fmt.Errorf("tensor map: rank %d; 1 to 5", r)
	}
	if len(s.Box) != r || len(s.Strides) != r-1 || (s.ElemStrides != nil && len(s.ElemStrides) != r) {
		return fmt.Errorf("tensor map: rank %d needs %d box sizes, %d strides and %d element strides; got %d, %d, %d",
			r, r, r-1, r, len(s.Box), len(s.Strides), len(s.ElemStrides))
	}
	if s.Base == 0 || s.Base%16 != 0 {
		return fmt.Errorf("tensor map: base %#x must be a non-null 16-byte aligned device address", s.Base)
	}
	for i, d := range s.Dims {
		if d < 1 || d > 1<<32 {
			return fmt.Errorf("tensor map: dimension %d is %d; 1 to 2^32", i, d)
		}
		if s.Box[i] < 1 || s.Box[i] > 256 {
			return fmt.Errorf("tensor map: box dimension %d is %d; 1 to 256", i, s.Box[i])
		}
		if s.ElemStrides != nil && (s.ElemStrides[i] < 1 || s.ElemStrides[i] > 8) {
			return fmt.Errorf("tensor map: element stride %d is %d; 1 to 8", i, s.ElemStrides[i])
		}
	}
	for i, st := range s.Strides {
		if st%16 != 0 || st >= 1<<40 {
			return fmt.Errorf("tensor map: stride %d is %d bytes; a multiple of 16 below 2^40", i+1, st)
		}
	}
	inner := int(s.Box[0]) * eb
	if inner%16 != 0 {
		return fmt.Errorf("tensor map: the box's inner dimension is %d bytes; a multiple of 16", inner)
	}
	if span > 0 && inner > span {
		return fmt.Errorf("tensor map: the box's inner dimension is %d bytes, more than the %d-byte swizzle", inner, span)
	}
	return nil
}

// HostAlloc returns ordinary memory: every copy of the emulator is
// synchronous, so nothing needs page-locking.
func (*emuDriver) HostAlloc(bytes int) ([]byte, error) {
	if bytes < 1 {
		return nil, fmt.Errorf("emulation: host allocation of %d bytes", bytes)
	}
	return make([]byte, bytes), nil
}

func (*emuDriver) HostFree(b []byte) error {
	if b == nil {
		return errors.New("emulation: freeing a nil host allocation")
	}
	return nil
}

func (d *emuDriver) ToHostAsync(dst []byte, src uintptr) error {
	if len(dst) == 0 {
		return nil
	}
	return d.stream("to-host", func() error { emu.ToHost(unsafe.Pointer(&dst[0]), src, int64(len(dst))); return nil })
}

func (d *emuDriver) BeginCapture() error {
	if d.capture != nil {
		return errors.New("emulation: a stream capture is already open")
	}
	d.capture = &emuGraph{}
	return nil
}

func (d *emuDriver) EndCapture() (Graph, error) {
	if d.capture == nil {
		return nil, errors.New("emulation: EndCapture without BeginCapture")
	}
	g := d.capture
	d.capture = nil
	return g, nil
}

func (*emuDriver) Instantiate(g Graph) (GraphExec, error) {
	eg, ok := g.(*emuGraph)
	if !ok || eg == nil {
		return nil, fmt.Errorf("emulation: %T is not a graph of this driver", g)
	}
	return &emuGraphExec{g: eg}, nil
}

func (*emuDriver) UpdateGraph(exec GraphExec, g Graph) error {
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
	ex, ok := exec.(*emuGraphExec)
	if !ok || ex == nil {
		return fmt.Errorf("emulation: %T is not an instantiated graph of this driver", exec)
	}
	if d.capture != nil {
		return errors.New("emulation: launching a graph during a capture")
	}
	for i, op := range ex.g.ops {
		if err := op(); err != nil {
			return fmt.Errorf("graph operation %d (%s): %w", i, ex.g.kinds[i], err)
		}
	}
	return nil
}

func (*emuDriver) DestroyGraph(g Graph) error {
	if _, ok := g.(*emuGraph); !ok {
		return fmt.Errorf("emulation: %T is not a graph of this driver", g)
	}
	return nil
}

func (*emuDriver) DestroyGraphExec(exec GraphExec) error {
	if _, ok := exec.(*emuGraphExec); !ok {
		return fmt.Errorf("emulation: %T is not an instantiated graph of this driver", exec)
	}
	return nil
}

var _ Extended = (*emuDriver)(nil)
