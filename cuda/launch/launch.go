//go:build cuda

package launch

import (
	"encoding/binary"
	"math"

	"github.com/dinoclip/dinoclip/cuda/driver"
)

// Kernel identifies an entry point of the embedded kernels; the constants
// (K + the kernel's name in Go case) are generated, in kernels.Modules
// order.
type Kernel int

// String is the kernel's name in its source.
func (k Kernel) String() string {
	if k < 0 || k >= NumKernels {
		return "unknown kernel"
	}
	return names[k]
}

// Names returns every kernel's name, indexed by Kernel: the list a driver
// is opened with.
func Names() []string { return names[:] }

// Launcher runs a kernel: params holds one byte slice per kernel
// parameter, exactly as large as the parameter (kernels.ParamSizes).
// cuda.Device implements it on its driver.
type Launcher interface {
	Launch(k Kernel, cfg driver.LaunchConfig, params [][]byte) error
}

// Ptr is the device address of elements of type T that a kernel may write
// (a `T*` parameter); ConstPtr is one it only reads (`const T*`). The zero
// value is the null pointer. A Ptr converts to a ConstPtr with Const.
type (
	Ptr[T any]      uintptr
	ConstPtr[T any] uintptr
)

// Float16 and BFloat16 are the bits of an IEEE binary16 (__half) and of a
// bfloat16 (__nv_bfloat16) value, the element types of half-precision
// pointers.
type (
	Float16  uint16
	BFloat16 uint16
)

// Packing of one parameter: its bytes in the device's (little-endian) order.
// One function per C parameter type the generator maps
// (kernels/internal/gen/parse.go), used by the stubs of the kernels that
// declare one: no kernel takes an unsigned parameter today, so u32 and
// u64 wait for the first that does.

func ptr[P ~uintptr](p P) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(p)) }
func i32(v int32) []byte         { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
func u32(v uint32) []byte        { return binary.LittleEndian.AppendUint32(nil, v) }
func i64(v int64) []byte         { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
func u64(v uint64) []byte        { return binary.LittleEndian.AppendUint64(nil, v) }
func f32(v float32) []byte       { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)) }
func f64(v float64) []byte       { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v)) }
func tensorMap(m driver.TensorMap) []byte {
	return m[:]
}
