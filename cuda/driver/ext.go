//go:build cuda

package driver

import (
	"fmt"
	"unsafe"
)

// What the tensor-core kernels need beyond Driver: launches with
// parameters of any size (a 128-byte CUtensorMap by value), 3-D grids and
// blocks, thread-block clusters and dynamic shared memory above 48 KiB;
// tensor maps for the TMA; pinned host memory; and CUDA graphs. A driver
// that has them implements Extended; gorgonia.org/cu has none of them, so
// the real driver reaches them through its own libcuda loader, and the
// emulator implements them on the host.

// LaunchConfig is the geometry of an extended launch.
type LaunchConfig struct {
	Grid, Block [3]int
	// Cluster is the thread-block cluster's shape; all zeros launches no
	// cluster. Grid must be a multiple of it in each dimension.
	Cluster [3]int
	// SharedBytes is the block's dynamic shared memory. Above 48 KiB the
	// kernel must first be allowed it with SetMaxDynamicShared.
	SharedBytes int
}

// TensorDataType is a CUtensorMapDataType value.
type TensorDataType int

// The tensor element types dinoclip uses, with the CUDA driver's values.
const (
	TensorFloat16  TensorDataType = 6
	TensorFloat32  TensorDataType = 7
	TensorBFloat16 TensorDataType = 9
)

// Swizzle is a CUtensorMapSwizzle value: how a TMA copy permutes the
// 16-byte chunks of each row of the box in shared memory.
type Swizzle int

const (
	SwizzleNone Swizzle = 0
	Swizzle32B  Swizzle = 1
	Swizzle64B  Swizzle = 2
	Swizzle128B Swizzle = 3
)

// TensorMapSpec describes a tiled tensor map (cuTensorMapEncodeTiled): a
// tensor of Rank = len(Dims) dimensions in global memory, innermost first,
// and the box a TMA copy moves.
type TensorMapSpec struct {
	DataType TensorDataType
	Base     uintptr  // device address of element 0
	Dims     []uint64 // elements per dimension, innermost first
	Strides  []uint64 // bytes between consecutive indices of dimensions 1..Rank-1
	Box      []uint32 // the box's elements per dimension
	// ElemStrides are the box's traversal strides; nil means all 1.
	ElemStrides []uint32
	Swizzle     Swizzle
	// NaNFill fills out-of-bounds elements with NaN instead of zero.
	NaNFill bool
}

// TensorMap is an encoded CUtensorMap: 128 opaque bytes that a kernel takes
// by value as a `const __grid_constant__ CUtensorMap` parameter.
type TensorMap [128]byte

// Graph is a captured CUDA graph; GraphExec its instantiated form.
type (
	Graph     any
	GraphExec any
)

// Extended is what a Driver offers for tensor-core kernels and whole-step
// graphs.
type Extended interface {
	// LaunchEx runs kernel k with cfg; params holds each kernel parameter's
	// bytes, exactly as large as the kernel declares it (4 for int and
	// float, 8 for a pointer, 128 for a CUtensorMap).
	LaunchEx(k int, cfg LaunchConfig, params [][]byte) error
	// SetMaxDynamicShared allows kernel k up to bytes of dynamic shared
	// memory per block.
	SetMaxDynamicShared(k int, bytes int) error
	EncodeTensorMap(spec TensorMapSpec) (TensorMap, error)
	// KernelPath is the Key of the compiled form of the kernels the driver
	// loaded (kernels.SM90a.Key or kernels.PortablePTX.Key). Only the
	// sm_90a cubins have working wgmma/TMA kernels: the PTX build's bodies
	// of those kernels trap.
	KernelPath() string
	// Multiprocessors is the device's number of streaming multiprocessors,
	// the grid of a persistent kernel.
	Multiprocessors() int

	// HostAlloc returns page-locked host memory, which asynchronous copies
	// need to overlap with kernels; HostFree releases it.
	HostAlloc(bytes int) ([]byte, error)
	HostFree(b []byte) error
	// ToHostAsync copies into page-locked memory without waiting.
	ToHostAsync(dst []byte, src uintptr) error
	// UploadAsync copies page-locked src to dst on the stream without
	// waiting: the copy reads src when the stream reaches it, so the host
	// must not write src again before WaitEvent(done) has returned (done
	// is recorded after the copy; nil records nothing). ToDevice refuses
	// page-locked memory, where it could not keep its promise to have read
	// src when it returns.
	UploadAsync(dst uintptr, src []byte, done Event) error

	// BeginCapture starts recording the stream's work into a graph instead
	// of running it; EndCapture returns the graph.
	BeginCapture() error
	EndCapture() (Graph, error)
	Instantiate(g Graph) (GraphExec, error)
	// UpdateGraph updates exec in place to run g (same topology, other
	// parameters); an error means instantiate g afresh.
	UpdateGraph(exec GraphExec, g Graph) error
	LaunchGraph(exec GraphExec) error
	DestroyGraph(g Graph) error
	DestroyGraphExec(exec GraphExec) error
}

// checkPinned refuses b for call, an asynchronous copy into or from (prep)
// b, unless b is non-empty and lies inside one of pinned's allocations;
// who names the driver in the error.
func checkPinned(who, call, prep string, pinned map[uintptr]int, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%s: %s of no bytes", who, call)
	}
	if !pinnedIn(pinned, b) {
		return fmt.Errorf("%s: %s %s %d bytes at %#x, which are not pinned memory from HostAlloc", who, call, prep, len(b), uintptr(unsafe.Pointer(&b[0])))
	}
	return nil
}

// pinnedIn reports whether b lies inside one of the allocations of
// pinned, which maps each allocation's address to its length.
func pinnedIn(pinned map[uintptr]int, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(&b[0]))
	hi := lo + uintptr(len(b))
	for p, n := range pinned {
		if lo >= p && hi <= p+uintptr(n) {
			return true
		}
	}
	return false
}
