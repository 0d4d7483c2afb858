//go:build cuda && !cudaemu

package driver

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver/libcuda"
	"github.com/dinoclip/dinoclip/kernels"
	"gorgonia.org/cu"
)

var _ Extended = (*cuDriver)(nil)

// cuExt is the cu driver's access to the calls gorgonia.org/cu lacks,
// through package libcuda, set up at the first Extended call.
type cuExt struct {
	lib    *libcuda.Lib
	fns    []libcuda.Function // the raw handles of cuDriver.fns
	stream libcuda.Stream
	limits DeviceLimits
	// pinned maps the address of each HostAlloc allocation to its length.
	pinned map[uintptr]int
	// maxShared is the dynamic shared memory each kernel was allowed by
	// SetMaxDynamicShared (absent: the default, see checkShared).
	maxShared map[int]int
}

// The device attributes the limits come from (CUdevice_attribute values).
const (
	attrMaxSharedPerBlockOptin = 97
	attrClusterLaunch          = 120
)

// extended returns the driver's cuExt, setting it up on first use.
// libcuda.so.1 is already loaded (gorgonia.org/cu links it), so opening it
// again only resolves the entry points; it stays open for the process.
func (c *cuDriver) extended() (*cuExt, error) {
	if c.ext != nil {
		return c.ext, nil
	}
	lib, err := libcuda.Open("")
	if err != nil {
		return nil, err
	}
	x := &cuExt{lib: lib, pinned: map[uintptr]int{}, maxShared: map[int]int{}}
	for i, fn := range c.fns {
		h, err := rawFunction(fn)
		if err != nil {
			return nil, fmt.Errorf("cuda: kernel %s: %w", c.names[i], err)
		}
		x.fns = append(x.fns, h)
	}
	x.stream = libcuda.Stream(uintptr(unsafe.Pointer(c.stream.C())))
	optin, err := c.dev.Attribute(cu.DeviceAttribute(attrMaxSharedPerBlockOptin))
	if err != nil {
		return nil, fmt.Errorf("cuda: the device's shared memory per block: %w", err)
	}
	x.limits.MaxDynamicShared = optin
	// A driver that does not know the attribute (older than CUDA 11.8)
	// cannot launch clusters either.
	clusters, err := c.dev.Attribute(cu.DeviceAttribute(attrClusterLaunch))
	x.limits.Clusters = err == nil && clusters != 0
	c.ext = x
	return x, nil
}

// rawFunction is the CUfunction inside fn. gorgonia.org/cu keeps it in the
// one unexported field of cu.Function, a pointer, and has no accessor; the
// layout is checked here so that another cu version fails with an error,
// not a wild call (the GPU test also compares the kernel's register count
// read through both).
func rawFunction(fn cu.Function) (libcuda.Function, error) {
	t := reflect.TypeOf(fn)
	if t.Kind() != reflect.Struct || t.NumField() != 1 || t.Field(0).Type.Kind() != reflect.Pointer || t.Size() != unsafe.Sizeof(uintptr(0)) {
		return 0, fmt.Errorf("gorgonia.org/cu's Function is %v, not the one pointer this driver reads its CUfunction from", t)
	}
	return libcuda.Function(*(*uintptr)(unsafe.Pointer(&fn))), nil
}

func (c *cuDriver) kernel(k int) (*cuExt, libcuda.Function, error) {
	x, err := c.extended()
	if err != nil {
		return nil, 0, err
	}
	if k < 0 || k >= len(x.fns) {
		return nil, 0, fmt.Errorf("cuda: kernel index %d of %d", k, len(x.fns))
	}
	return x, x.fns[k], nil
}

func (c *cuDriver) LaunchEx(k int, cfg LaunchConfig, params [][]byte) error {
	x, fn, err := c.kernel(k)
	if err != nil {
		return err
	}
	if err := cfg.Validate(x.limits); err != nil {
		return fmt.Errorf("cuda: kernel %s: %w", c.names[k], err)
	}
	allowed, raised := x.maxShared[k]
	if err := checkShared(c.names[k], cfg.SharedBytes, allowed, raised); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	if err := kernels.CheckParams(c.names[k], len(params), func(i int) int { return len(params[i]) }); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	var l libcuda.Launch
	for i := range 3 {
		l.Grid[i], l.Block[i], l.Cluster[i] = uint32(cfg.Grid[i]), uint32(cfg.Block[i]), uint32(cfg.Cluster[i])
	}
	l.SharedBytes = uint32(cfg.SharedBytes)
	l.Stream = x.stream
	if err := x.lib.LaunchKernelEx(fn, l, params); err != nil {
		return fmt.Errorf("cuda: launching kernel %s: %w", c.names[k], kernelFault(err))
	}
	return nil
}

func (c *cuDriver) SetMaxDynamicShared(k int, bytes int) error {
	x, fn, err := c.kernel(k)
	if err != nil {
		return err
	}
	if err := x.limits.CheckDynamicShared(bytes); err != nil {
		return fmt.Errorf("cuda: kernel %s: %w", c.names[k], err)
	}
	if err := x.lib.FuncSetAttribute(fn, libcuda.FuncMaxDynamicSharedSize, bytes); err != nil {
		return fmt.Errorf("cuda: kernel %s: %w", c.names[k], err)
	}
	x.maxShared[k] = bytes
	return nil
}

// l2Promotion128B lets the TMA fetch whole 128-byte lines into L2
// (CU_TENSOR_MAP_L2_PROMOTION_L2_128B): a box row is 128 bytes or less.
const l2Promotion128B = 2

func (c *cuDriver) EncodeTensorMap(spec TensorMapSpec) (TensorMap, error) {
	x, err := c.extended()
	if err != nil {
		return TensorMap{}, err
	}
	if err := spec.Validate(); err != nil {
		return TensorMap{}, fmt.Errorf("cuda: %w", err)
	}
	a := libcuda.TensorMapTiled{DataType: uint32(spec.DataType), Base: spec.Base, Dims: spec.Dims, Strides: spec.Strides,
		Box: spec.Box, ElemStrides: spec.ElemStrides, Swizzle: uint32(spec.Swizzle), L2Promotion: l2Promotion128B}
	if a.ElemStrides == nil {
		a.ElemStrides = make([]uint32, len(spec.Dims))
		for i := range a.ElemStrides {
			a.ElemStrides[i] = 1
		}
	}
	if spec.NaNFill {
		a.OOBFill = 1 // CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA
	}
	m, err := x.lib.TensorMapEncodeTiled(a)
	if err != nil {
		return TensorMap{}, fmt.Errorf("cuda: %w", err)
	}
	return TensorMap(m), nil
}

func (c *cuDriver) HostAlloc(bytes int) ([]byte, error) {
	x, err := c.extended()
	if err != nil {
		return nil, err
	}
	// Flags 0: pinned for this context, which is the only one.
	b, err := x.lib.MemHostAlloc(bytes, 0)
	if err != nil {
		return nil, fmt.Errorf("cuda: %d bytes of pinned host memory: %w", bytes, err)
	}
	x.pinned[uintptr(unsafe.Pointer(&b[0]))] = len(b)
	return b, nil
}

func (c *cuDriver) HostFree(b []byte) error {
	x, err := c.extended()
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("cuda: HostFree of no memory")
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	if n, ok := x.pinned[p]; !ok || n != len(b) {
		return fmt.Errorf("cuda: HostFree of %d bytes at %#x, which is not an allocation of HostAlloc", len(b), p)
	}
	delete(x.pinned, p)
	return x.lib.MemFreeHost(b)
}

// pinnedExt returns the extended calls for call, an asynchronous copy
// into or from (prep) b, which must be bytes of a HostAlloc allocation.
func (c *cuDriver) pinnedExt(call, prep string, b []byte) (*cuExt, error) {
	x, err := c.extended()
	if err != nil {
		return nil, err
	}
	if err := checkPinned("cuda", call, prep, x.pinned, b); err != nil {
		return nil, err
	}
	return x, nil
}

// ToHostAsync's destination must be pinned: a pageable one would make the
// copy synchronous, or be written after the garbage collector reused it.
func (c *cuDriver) ToHostAsync(dst []byte, src uintptr) error {
	x, err := c.pinnedExt("ToHostAsync", "into", dst)
	if err != nil {
		return err
	}
	return kernelFault(x.lib.MemcpyDtoHAsync(dst, src, x.stream))
}

// UploadAsync's source must be pinned: from pageable memory the copy would
// be staged, and src read, before the call returns, not when the stream
// reaches it, which is what the caller waits on done for.
func (c *cuDriver) UploadAsync(dst uintptr, src []byte, done Event) error {
	if _, err := c.pinnedExt("UploadAsync", "from", src); err != nil {
		return err
	}
	if err := cu.MemcpyHtoDAsync(cu.DevicePtr(dst), unsafe.Pointer(&src[0]), int64(len(src)), c.stream); err != nil {
		return kernelFault(err)
	}
	if done == nil {
		return nil
	}
	return c.Record(done)
}

// BeginCapture captures in thread-local mode: the capture forbids unsafe
// calls (an allocation, a synchronous copy) on the engine's own thread,
// where they would break it, and leaves other threads' contexts alone.
func (c *cuDriver) BeginCapture() error {
	x, err := c.extended()
	if err != nil {
		return err
	}
	return x.lib.StreamBeginCapture(x.stream, libcuda.CaptureThreadLocal)
}

func (c *cuDriver) EndCapture() (Graph, error) {
	x, err := c.extended()
	if err != nil {
		return nil, err
	}
	g, err := x.lib.StreamEndCapture(x.stream)
	if err != nil {
		return nil, err
	}
	return g, nil
}

func graphOf(g Graph) (libcuda.Graph, error) {
	h, ok := g.(libcuda.Graph)
	if !ok || h == 0 {
		return 0, fmt.Errorf("cuda: %T is not a graph of this driver", g)
	}
	return h, nil
}

func execOf(e GraphExec) (libcuda.GraphExec, error) {
	h, ok := e.(libcuda.GraphExec)
	if !ok || h == 0 {
		return 0, fmt.Errorf("cuda: %T is not an executable graph of this driver", e)
	}
	return h, nil
}

func (c *cuDriver) Instantiate(g Graph) (GraphExec, error) {
	x, err := c.extended()
	if err != nil {
		return nil, err
	}
	h, err := graphOf(g)
	if err != nil {
		return nil, err
	}
	e, err := x.lib.GraphInstantiate(h, 0)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (c *cuDriver) UpdateGraph(exec GraphExec, g Graph) error {
	x, err := c.extended()
	if err != nil {
		return err
	}
	e, err := execOf(exec)
	if err != nil {
		return err
	}
	h, err := graphOf(g)
	if err != nil {
		return err
	}
	return x.lib.GraphExecUpdate(e, h)
}

func (c *cuDriver) LaunchGraph(exec GraphExec) error {
	x, err := c.extended()
	if err != nil {
		return err
	}
	e, err := execOf(exec)
	if err != nil {
		return err
	}
	return kernelFault(x.lib.GraphLaunch(e, x.stream))
}

func (c *cuDriver) DestroyGraph(g Graph) error {
	x, err := c.extended()
	if err != nil {
		return err
	}
	h, err := graphOf(g)
	if err != nil {
		return err
	}
	return x.lib.GraphDestroy(h)
}

func (c *cuDriver) DestroyGraphExec(exec GraphExec) error {
	x, err := c.extended()
	if err != nil {
		return err
	}
	e, err := execOf(exec)
	if err != nil {
		return err
	}
	return x.lib.GraphExecDestroy(e)
}

func (c *cuDriver) KernelPath() string { return c.pathKey }

func (c *cuDriver) Multiprocessors() int { return c.sms }
