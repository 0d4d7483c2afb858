//go:build cuda && !cudaemu

package driver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver/libcuda"
	"gorgonia.org/cu"
)

// These tests need a GPU (scripts/gpu-check.sh runs them): they drive the
// Extended calls of the cu driver through libcuda.so.1 and compare what
// they compute with the plain launch path of gorgonia.org/cu.

const (
	kGeluBackward = 0 // gelu_backward(float* dx, const float* dy, const float* x, int n)
	geluBlock     = 256
)

// openGPU opens the driver on the test's own locked thread with the GELU
// backward kernel, and uploads n inputs.
func openGPU(t *testing.T, n int) (*cuDriver, uintptr) {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	d, err := Open([]string{"gelu_backward"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	c := d.(*cuDriver)
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i%977)/97 - 5
	}
	return c, upload(t, c, x)
}

func upload(t *testing.T, c *cuDriver, v []float32) uintptr {
	t.Helper()
	p := alloc(t, c, len(v))
	if err := c.ToDevice(p, unsafe.Pointer(&v[0]), int64(4*len(v))); err != nil {
		t.Fatal(err)
	}
	return p
}

func alloc(t *testing.T, c *cuDriver, n int) uintptr {
	t.Helper()
	p, err := c.Alloc(int64(4 * n))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Free(p) })
	if err := c.Zero(p, int64(4*n)); err != nil {
		t.Fatal(err)
	}
	return p
}

func download(t *testing.T, c *cuDriver, p uintptr, n int) []byte {
	t.Helper()
	b := make([]byte, 4*n)
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := c.ToHost(unsafe.Pointer(&b[0]), p, int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return b
}

func ptrParam(p uintptr) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(p)) }
func intParam(n int) []byte     { return binary.LittleEndian.AppendUint32(nil, uint32(int32(n))) }

func grid(n int) int { return (n + geluBlock - 1) / geluBlock }

// forward runs y = x GELU'(x) (gelu_backward with dy = x) the plain way
// (gorgonia's cuLaunchKernel).
func forward(t *testing.T, c *cuDriver, y, x uintptr, n int) {
	t.Helper()
	if err := c.Launch(kGeluBackward, grid(n), 1, geluBlock, []uint64{uint64(y), uint64(x), uint64(x), uint64(n)}); err != nil {
		t.Fatal(err)
	}
}

func computeCapability(t *testing.T, c *cuDriver) int {
	major, err := c.dev.Attribute(cu.ComputeCapabilityMajor)
	if err != nil {
		t.Fatal(err)
	}
	minor, err := c.dev.Attribute(cu.ComputeCapabilityMinor)
	if err != nil {
		t.Fatal(err)
	}
	return 10*major + minor
}

// The CUfunction read out of gorgonia's Function is the kernel: the driver
// reports the same attributes for it as gorgonia does.
func TestGPURawFunctionHandles(t *testing.T) {
	c, _ := openGPU(t, 1)
	x, err := c.extended()
	if err != nil {
		t.Fatal(err)
	}
	for k, fn := range c.fns {
		for _, a := range []struct {
			ours   libcuda.FuncAttribute
			theirs cu.FunctionAttribute
		}{{libcuda.FuncNumRegs, cu.NumRegs}, {libcuda.FuncMaxThreadsPerBlock, cu.FnMaxThreadsPerBlock}} {
			got, err := x.lib.FuncGetAttribute(x.fns[k], a.ours)
			if err != nil {
				t.Fatal(err)
			}
			want, err := fn.Attribute(a.theirs)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("kernel %s attribute %d: %d through libcuda, %d through gorgonia", c.names[k], a.ours, got, want)
			}
		}
	}
	if x.stream == 0 {
		t.Error("the driver's stream reads as the legacy default stream")
	}
	t.Logf("limits: %+v", x.limits)
}

func TestGPULaunchEx(t *testing.T) {
	const n = 1<<16 + 3
	c, x := openGPU(t, n)
	want := alloc(t, c, n)
	forward(t, c, want, x, n)
	ref := download(t, c, want, n)

	y := alloc(t, c, n)
	params := [][]byte{ptrParam(y), ptrParam(x), ptrParam(x), intParam(n)}
	check := func(what string, cfg LaunchConfig) {
		t.Helper()
		if err := c.Zero(y, 4*n); err != nil {
			t.Fatal(err)
		}
		if err := c.LaunchEx(kGeluBackward, cfg, params); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := download(t, c, y, n); !bytes.Equal(got, ref) {
			t.Errorf("%s: gelu_backward through cuLaunchKernelEx differs from cuLaunchKernel", what)
		}
	}
	g := grid(n) + grid(n)%2 // even, for a cluster of 2
	check("plain", LaunchConfig{Grid: [3]int{g, 1, 1}, Block: [3]int{geluBlock, 1, 1}})

	// Dynamic shared memory above 48 KiB: refused until the kernel is
	// allowed it.
	big := LaunchConfig{Grid: [3]int{g, 1, 1}, Block: [3]int{geluBlock, 1, 1}, SharedBytes: 64 << 10}
	if err := c.LaunchEx(kGeluBackward, big, params); err == nil {
		t.Error("a launch with 64 KiB of dynamic shared memory ran before SetMaxDynamicShared")
	}
	if err := c.SetMaxDynamicShared(kGeluBackward, 64<<10); err != nil {
		t.Fatal(err)
	}
	check("64 KiB dynamic shared memory", big)
	if err := c.SetMaxDynamicShared(kGeluBackward, c.ext.limits.MaxDynamicShared+1); err == nil {
		t.Error("SetMaxDynamicShared beyond the device's opt-in limit: no error")
	}

	cluster := LaunchConfig{Grid: [3]int{g, 1, 1}, Block: [3]int{geluBlock, 1, 1}, Cluster: [3]int{2, 1, 1}}
	if computeCapability(t, c) >= 90 {
		if !c.ext.limits.Clusters {
			t.Fatal("compute capability 9.0 without cluster launch")
		}
		check("cluster of 2", cluster)
	} else if err := c.LaunchEx(kGeluBackward, cluster, params); err == nil {
		t.Error("a cluster launch before compute capability 9.0: no error")
	}
	if err := c.LaunchEx(kGeluBackward, LaunchConfig{Grid: [3]int{1, 1, 1}, Block: [3]int{2048, 1, 1}}, params); err == nil {
		t.Error("a block of 2048 threads: no error")
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestGPUTensorMap(t *testing.T) {
	c, _ := openGPU(t, 1)
	if cc := computeCapability(t, c); cc < 90 {
		t.Skipf("tensor maps need compute capability 9.0; this GPU has %d.%d", cc/10, cc%10)
	}
	const rows, cols = 256, 768 // bf16
	base := alloc(t, c, rows*cols/2)
	spec := TensorMapSpec{DataType: TensorBFloat16, Base: base, Dims: []uint64{cols, rows}, Strides: []uint64{2 * cols},
		Box: []uint32{64, 128}, Swizzle: Swizzle128B}
	m, err := c.EncodeTensorMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	if m == (TensorMap{}) {
		t.Error("the driver encoded an all-zero tensor map")
	}
	spec.NaNFill, spec.ElemStrides = true, []uint32{1, 2}
	if _, err := c.EncodeTensorMap(spec); err != nil {
		t.Errorf("NaN fill and element strides: %v", err)
	}
	// The real driver also refuses what Validate refuses: a base address
	// off the 16-byte grid, passed to it directly.
	a := libcuda.TensorMapTiled{DataType: uint32(TensorBFloat16), Base: base + 8, Dims: []uint64{cols, rows},
		Strides: []uint64{2 * cols}, Box: []uint32{64, 128}, ElemStrides: []uint32{1, 1}, Swizzle: uint32(Swizzle128B)}
	if _, err := c.ext.lib.TensorMapEncodeTiled(a); err == nil {
		t.Error("the driver encoded a tensor map at a base 8 bytes off alignment")
	}
	spec.Box[0] = 128 // 256 bytes, more than the 128-byte swizzle span
	if _, err := c.EncodeTensorMap(spec); err == nil || !strings.Contains(err.Error(), "swizzle span") {
		t.Errorf("a box wider than its swizzle: %v", err)
	}
}

func TestGPUPinnedMemory(t *testing.T) {
	const n = 1 << 20
	c, x := openGPU(t, n)
	y := alloc(t, c, n)
	forward(t, c, y, x, n)
	ref := download(t, c, y, n)
	b, err := c.HostAlloc(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ToHostAsync(b, y); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, ref) {
		t.Error("the asynchronous copy into pinned memory differs from the synchronous one")
	}
	if err := c.ToHostAsync(make([]byte, 64), y); err == nil {
		t.Error("ToHostAsync into pageable Go memory: no error")
	}
	// Back up from the pinned copy: UploadAsync, waited for by its event,
	// lands what the pinned buffer held; ToDevice refuses pinned memory
	// and UploadAsync pageable memory.
	z := alloc(t, c, n)
	done, err := c.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer c.DestroyEvent(done)
	if err := c.UploadAsync(z, b, done); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitEvent(done); err != nil {
		t.Fatal(err)
	}
	clear(b)
	if !bytes.Equal(download(t, c, z, n), ref) {
		t.Error("UploadAsync from pinned memory: the device holds other bytes")
	}
	if err := c.ToDevice(z, unsafe.Pointer(&b[0]), 64); err == nil || !strings.Contains(err.Error(), "UploadAsync") {
		t.Errorf("ToDevice from pinned memory: %v, want a refusal naming UploadAsync", err)
	}
	if err := c.UploadAsync(z, make([]byte, 64), nil); err == nil {
		t.Error("UploadAsync from pageable Go memory: no error")
	}
	if err := c.HostFree(b[4:]); err == nil {
		t.Error("HostFree of part of an allocation: no error")
	}
	if err := c.HostFree(b); err != nil {
		t.Fatal(err)
	}
	if err := c.HostFree(b); err == nil {
		t.Error("a second HostFree: no error")
	}
}

// Two launches captured into a graph (one plain, one extended) replay to
// the results of running them directly; an update to other buffers
// redirects the replay.
func TestGPUGraph(t *testing.T) {
	const n = 100003
	c, x := openGPU(t, n)
	y, dx := alloc(t, c, n), alloc(t, c, n)
	forward(t, c, y, x, n)
	if err := c.LaunchEx(kGeluBackward, LaunchConfig{Grid: [3]int{grid(n), 1, 1}, Block: [3]int{geluBlock, 1, 1}},
		[][]byte{ptrParam(dx), ptrParam(y), ptrParam(x), intParam(n)}); err != nil {
		t.Fatal(err)
	}
	refY, refDX := download(t, c, y, n), download(t, c, dx, n)
	if math.Float32frombits(binary.LittleEndian.Uint32(refY[4*(n-1):])) == 0 {
		t.Fatal("the first launch left the last element 0: the reference is wrong")
	}

	capture := func(y, dx uintptr) Graph {
		t.Helper()
		if err := c.BeginCapture(); err != nil {
			t.Fatal(err)
		}
		forward(t, c, y, x, n)
		if err := c.LaunchEx(kGeluBackward, LaunchConfig{Grid: [3]int{grid(n), 1, 1}, Block: [3]int{geluBlock, 1, 1}},
			[][]byte{ptrParam(dx), ptrParam(y), ptrParam(x), intParam(n)}); err != nil {
			t.Fatal(err)
		}
		g, err := c.EndCapture()
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	y1, dx1 := alloc(t, c, n), alloc(t, c, n)
	g1 := capture(y1, dx1)
	if got := download(t, c, y1, n); bytes.Count(got, []byte{0}) != len(got) {
		t.Fatal("a captured launch ran during the capture")
	}
	exec, err := c.Instantiate(g1)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.LaunchGraph(exec); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(download(t, c, y1, n), refY) || !bytes.Equal(download(t, c, dx1, n), refDX) {
		t.Error("the replayed graph differs from the direct launches")
	}

	y2, dx2 := alloc(t, c, n), alloc(t, c, n)
	g2 := capture(y2, dx2)
	if err := c.UpdateGraph(exec, g2); err != nil {
		t.Fatal(err)
	}
	if err := c.LaunchGraph(exec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(download(t, c, y2, n), refY) || !bytes.Equal(download(t, c, dx2, n), refDX) {
		t.Error("the updated graph did not write the new buffers")
	}
	for _, err := range []error{c.DestroyGraphExec(exec), c.DestroyGraph(g1), c.DestroyGraph(g2)} {
		if err != nil {
			t.Error(err)
		}
	}
	if err := c.LaunchGraph("not a graph"); err == nil {
		t.Error("LaunchGraph of a string: no error")
	}
}

// A kernel's asynchronous fault keeps the driver's error (errors.Is) and
// says what it means here; IsKernelFault knows a kernel's faults from
// other errors, of memory or of the device, that may also lose a context.
func TestKernelFaultExplained(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{cu.LaunchFailed, "barrier wait"},
		{cu.IllegalAddress, "outside its buffers"},
		// package libcuda's calls (LaunchEx, LaunchGraph, ToHostAsync)
		{&libcuda.Error{Call: "cuGraphLaunch", Code: 719, Name: "CUDA_ERROR_LAUNCH_FAILED"}, "CUDA_LAUNCH_BLOCKING=1"},
		{fmt.Errorf("wrapped: %w", &libcuda.Error{Call: "cuLaunchKernelEx", Code: 700}), "outside its buffers"},
	} {
		got := kernelFault(c.err)
		if !errors.Is(got, c.err) || !strings.Contains(got.Error(), c.want) {
			t.Errorf("kernelFault(%v) = %v, want it wrapped with %q", c.err, got, c.want)
		}
	}
	for _, other := range []error{cu.OutOfMemory, &libcuda.Error{Call: "cuLaunchKernelEx", Code: 1}} {
		if got := kernelFault(other); got != other {
			t.Errorf("kernelFault(%v) = %v, want it unchanged", other, got)
		}
	}
	if kernelFault(nil) != nil {
		t.Error("kernelFault(nil) is not nil")
	}
	var c cuDriver
	for _, fault := range []error{cu.LaunchFailed, fmt.Errorf("wrapped: %w", cu.MisalignedAddress), &libcuda.Error{Call: "cuGraphLaunch", Code: 700}} {
		if !c.IsKernelFault(fault) {
			t.Errorf("IsKernelFault(%v) = false", fault)
		}
	}
	for _, other := range []error{cu.OutOfMemory, cu.EccUncorrectable, &libcuda.Error{Call: "cuLaunchKernelEx", Code: 1}, nil} {
		if c.IsKernelFault(other) {
			t.Errorf("IsKernelFault(%v) = true", other)
		}
	}
}
