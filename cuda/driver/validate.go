//go:build cuda

package driver

import (
	"fmt"

	"github.com/dinoclip/dinoclip/kernels"
)

// The CUDA driver's rules for extended launches and tiled tensor maps, as
// the CUDA driver API documents them (cuLaunchKernelEx, cuFuncSetAttribute,
// cuTensorMapEncodeTiled), checked here once for both drivers: the real
// one fails with a bare CUDA_ERROR_INVALID_VALUE, the emulator must refuse
// what the GPU refuses.

// defaultDynamicShared is the shared memory a block may use, static and
// dynamic together, without opting in (cuFuncSetAttribute
// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
const defaultDynamicShared = 48 << 10

// checkShared applies CUDA's rule to a launch of kernel name with dynamic
// bytes of dynamic shared memory: without opting in, static and dynamic
// together within 48 KiB; opted in (raised, to allowed bytes), the dynamic
// part within the raise. On a GPU a launch beyond it fails with a bare
// CUDA_ERROR_INVALID_VALUE.
func checkShared(name string, dynamic, allowed int, raised bool) error {
	static, _ := kernels.StaticShared(name)
	if !raised {
		allowed = defaultDynamicShared - static
	}
	if dynamic > allowed {
		return fmt.Errorf("kernel %s: %d bytes of dynamic shared memory beside %d static; allowed %d (SetMaxDynamicShared raises it)",
			name, dynamic, static, allowed)
	}
	return nil
}

// checkZero applies Zero's rule: it clears 32-bit words
// (cuMemsetD32Async), so the byte count is a multiple of 4.
func checkZero(bytes int64) error {
	if bytes < 0 || bytes%4 != 0 {
		return fmt.Errorf("zeroing %d bytes: want a multiple of 4, 0 or more", bytes)
	}
	return nil
}

// DeviceLimits are the device facts an extended launch is checked against.
type DeviceLimits struct {
	// MaxDynamicShared is the most dynamic shared memory a block may opt
	// into (CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN).
	MaxDynamicShared int
	// Clusters says whether the device launches thread-block clusters
	// (compute capability 9.0 and later).
	Clusters bool
}

// SM90 are the limits of compute capability 9.0 (H100, H200): 227 KiB of
// shared memory per block, clusters.
var SM90 = DeviceLimits{MaxDynamicShared: 227 << 10, Clusters: true}

// MaxPortableCluster is the most blocks a cluster may have without the
// non-portable-size opt-in.
const MaxPortableCluster = 8

// CheckDynamicShared checks an amount of dynamic shared memory per block.
func (l DeviceLimits) CheckDynamicShared(bytes int) error {
	if bytes < 0 || bytes > l.MaxDynamicShared {
		return fmt.Errorf("%d bytes of dynamic shared memory per block: the device allows 0 to %d", bytes, l.MaxDynamicShared)
	}
	return nil
}

// Validate checks cfg against the CUDA limits and the device's.
func (cfg LaunchConfig) Validate(l DeviceLimits) error {
	g, b, c := cfg.Grid, cfg.Block, cfg.Cluster
	if g[0] < 1 || g[0] > 1<<31-1 || g[1] < 1 || g[1] > 65535 || g[2] < 1 || g[2] > 65535 {
		return fmt.Errorf("launch: grid %v: x must be 1 to 2^31-1, y and z 1 to 65535", g)
	}
	if b[0] < 1 || b[1] < 1 || b[2] < 1 || b[0] > 1024 || b[1] > 1024 || b[2] > 64 || b[0]*b[1]*b[2] > 1024 {
		return fmt.Errorf("launch: block %v: at most 1024 threads (1024, 1024, 64 per dimension)", b)
	}
	if c != [3]int{} {
		if !l.Clusters {
			return fmt.Errorf("launch: cluster %v: the device has no thread-block clusters (compute capability 9.0 and later)", c)
		}
		if c[0] < 1 || c[1] < 1 || c[2] < 1 || c[0]*c[1]*c[2] > MaxPortableCluster {
			return fmt.Errorf("launch: cluster %v: at least 1 in each dimension and at most %d blocks", c, MaxPortableCluster)
		}
		for i := range 3 {
			if g[i]%c[i] != 0 {
				return fmt.Errorf("launch: grid %v is not a multiple of the cluster %v", g, c)
			}
		}
	}
	if err := l.CheckDynamicShared(cfg.SharedBytes); err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	return nil
}

// Size is the bytes of one element of type t, 0 for a type dinoclip does
// not use.
func (t TensorDataType) Size() int {
	switch t {
	case TensorFloat16, TensorBFloat16:
		return 2
	case TensorFloat32:
		return 4
	}
	return 0
}

// Span is the bytes of a box row that swizzle s permutes (0 for none).
func (s Swizzle) Span() int {
	switch s {
	case Swizzle32B:
		return 32
	case Swizzle64B:
		return 64
	case Swizzle128B:
		return 128
	}
	return 0
}

// The tensor map limits of cuTensorMapEncodeTiled.
const (
	MaxTensorRank   = 5
	maxTensorDim    = 1 << 32
	maxTensorStride = 1 << 40 // exclusive
	maxBoxDim       = 256
	maxElemStride   = 8
	tensorAlign     = 16 // base address and strides
	boxRowMultiple  = 16 // bytes of a box's inner dimension
)

// Validate checks spec against cuTensorMapEncodeTiled's requirements, and
// that consecutive rows and planes do not overlap.
func (s TensorMapSpec) Validate() error {
	es := s.DataType.Size()
	if es == 0 {
		return fmt.Errorf("tensor map: data type %d (want float16 %d, float32 %d or bfloat16 %d)",
			s.DataType, TensorFloat16, TensorFloat32, TensorBFloat16)
	}
	rank := len(s.Dims)
	if rank < 1 || rank > MaxTensorRank {
		return fmt.Errorf("tensor map: rank %d, want 1 to %d", rank, MaxTensorRank)
	}
	if len(s.Strides) != rank-1 || len(s.Box) != rank || (s.ElemStrides != nil && len(s.ElemStrides) != rank) {
		return fmt.Errorf("tensor map: rank %d with %d strides, %d box and %d element strides (want %d, %d and %d or none)",
			rank, len(s.Strides), len(s.Box), len(s.ElemStrides), rank-1, rank, rank)
	}
	if s.Base == 0 || s.Base%tensorAlign != 0 {
		return fmt.Errorf("tensor map: base address %#x is not a %d-byte aligned device address", s.Base, tensorAlign)
	}
	for i, d := range s.Dims {
		if d < 1 || d > maxTensorDim {
			return fmt.Errorf("tensor map: dimension %d has %d elements, want 1 to 2^32", i, d)
		}
	}
	row := uint64(es) * s.Dims[0] // the bytes dimension 1's stride must cover
	for i, st := range s.Strides {
		if st%tensorAlign != 0 || st >= maxTensorStride {
			return fmt.Errorf("tensor map: stride %d is %d bytes, want a multiple of %d below 2^40", i+1, st, tensorAlign)
		}
		if st < row {
			return fmt.Errorf("tensor map: stride %d is %d bytes, less than the %d bytes of the dimension below it", i+1, st, row)
		}
		row = st * s.Dims[i+1]
	}
	for i, b := range s.Box {
		if b < 1 || b > maxBoxDim {
			return fmt.Errorf("tensor map: box dimension %d is %d elements, want 1 to %d", i, b, maxBoxDim)
		}
	}
	inner := int(s.Box[0]) * es
	if inner%boxRowMultiple != 0 {
		return fmt.Errorf("tensor map: the box's inner dimension is %d bytes, not a multiple of %d", inner, boxRowMultiple)
	}
	if s.Swizzle < SwizzleNone || s.Swizzle > Swizzle128B {
		return fmt.Errorf("tensor map: swizzle %d", s.Swizzle)
	}
	if span := s.Swizzle.Span(); span != 0 && inner > span {
		return fmt.Errorf("tensor map: the box's inner dimension is %d bytes, more than the %d-byte swizzle span", inner, span)
	}
	for i, e := range s.ElemStrides {
		if e < 1 || e > maxElemStride {
			return fmt.Errorf("tensor map: element stride %d is %d, want 1 to %d", i, e, maxElemStride)
		}
	}
	return nil
}
