//go:build cuda && cudaemu

package emu

/*
#cgo CXXFLAGS: -std=c++20 -O2 -Wno-psabi
#include <stdint.h>
#include <stdlib.h>
int emu_kernel_params(const char* name, int* out, int max);
int emu_launch_ex(const char* name, const int* dims, int smem_bytes, const unsigned char* const* params,
                  const int* param_sizes, int nparams, char* err, int errlen);
const char* emu_encode_tensor_map(unsigned char* out, int rank, int elem_bytes, int swizzle_span, int nan_fill,
                                  uint64_t base, const uint64_t* dims, const uint64_t* strides, const uint32_t* box,
                                  const uint32_t* elem_strides);
uintptr_t emu_alloc(int64_t bytes);
void emu_free(uintptr_t p);
uint64_t emu_set_schedule_seed(uint64_t seed);
int emu_schedule_seed_error(char* err, int errlen);
int64_t emu_limit(void);
int64_t emu_used(void);
void emu_to_device(uintptr_t dst, const void* src, int64_t bytes);
void emu_to_host(void* dst, uintptr_t src, int64_t bytes);
void emu_zero(uintptr_t dst, int64_t bytes);
void emu_copy(uintptr_t dst, uintptr_t src, int64_t bytes);
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	// The kernel sources are compiled here through #include from another
	// directory, which the go command does not track; package kernels
	// embeds them, so depending on it is also what rebuilds this package
	// when a .cu or .cuh file changes.
	"github.com/dinoclip/dinoclip/kernels"
)

// ErrOutOfMemory is Alloc's error past the emulated device's memory limit.
var ErrOutOfMemory = errors.New("emulated device: out of memory")

// cNames holds the C copy of every kernel name launched so far.
var cNames sync.Map // string -> *C.char

func cName(name string) *C.char {
	if p, ok := cNames.Load(name); ok {
		return p.(*C.char)
	}
	p, _ := cNames.LoadOrStore(name, C.CString(name))
	return p.(*C.char)
}

// maxParams bounds a kernel's parameter count (the CUDA limit is 4 KiB of
// parameters; the kernels here have a dozen at most).
const maxParams = 64

// ParamSizes returns the size in bytes of each parameter of kernel name.
func ParamSizes(name string) ([]int, error) {
	var sizes [maxParams]C.int
	n := int(C.emu_kernel_params(cName(name), &sizes[0], maxParams))
	if n < 0 {
		return nil, fmt.Errorf("emulation: no kernel %s", name)
	}
	if n > maxParams {
		return nil, fmt.Errorf("emulation: kernel %s has %d parameters, more than %d", name, n, maxParams)
	}
	out := make([]int, n)
	for i := range out {
		out[i] = int(sizes[i])
	}
	return out, nil
}

// Launch runs kernel name on a grid (gx, gy) of blocks of `block` threads;
// args holds one value per kernel parameter in its low bytes, as the CUDA
// driver reads them.
func Launch(name string, gx, gy, block int, args []uint64) error {
	params, err := Params(name, args)
	if err != nil {
		return err
	}
	return LaunchEx(name, [3]int{gx, gy, 1}, [3]int{block, 1, 1}, [3]int{1, 1, 1}, 0, params)
}

// Params turns Launch's arguments into LaunchEx's parameters: each value's
// low bytes, as many as the kernel's parameter has (at most 8).
func Params(name string, args []uint64) ([][]byte, error) {
	sizes, err := ParamSizes(name)
	if err != nil {
		return nil, err
	}
	if len(sizes) != len(args) {
		return nil, fmt.Errorf("emulation: kernel %s: %d arguments do not match its %d parameters", name, len(args), len(sizes))
	}
	params := make([][]byte, len(args))
	for i, a := range args {
		if sizes[i] > 8 {
			return nil, fmt.Errorf("emulation: kernel %s: parameter %d is %d bytes; pass it with LaunchEx", name, i, sizes[i])
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], a)
		params[i] = b[:sizes[i]]
	}
	return params, nil
}

// CheckLaunch checks what a GPU refuses when a launch is issued: a
// dimension out of range, or parameters that do not match the kernel's in
// count or size. (LaunchEx checks it too; a driver that queues the launch
// calls it first, so that the error comes from the launch call.)
func CheckLaunch(name string, grid, block, cluster [3]int, params [][]byte) error {
	for i := 0; i < 3; i++ {
		for _, d := range []int{grid[i], block[i], cluster[i]} {
			if d < 1 || d > 1<<31-1 {
				return fmt.Errorf("emulation: kernel %s: grid %v, block %v, cluster %v: a dimension out of range", name, grid, block, cluster)
			}
		}
	}
	if err := kernels.CheckParams(name, len(params), func(i int) int { return len(params[i]) }); err != nil {
		return fmt.Errorf("emulation: %w", err)
	}
	return nil
}

// LaunchEx runs kernel name on grid blocks of block threads, in clusters
// of cluster blocks (all ones: no clusters), with smemBytes of dynamic
// shared memory per block; params holds each parameter's bytes, exactly as
// large as the kernel declares it.
func LaunchEx(name string, grid, block, cluster [3]int, smemBytes int, params [][]byte) error {
	if err := CheckLaunch(name, grid, block, cluster, params); err != nil {
		return err
	}
	var dims [9]C.int
	for i := 0; i < 3; i++ {
		dims[i], dims[3+i], dims[6+i] = C.int(grid[i]), C.int(block[i]), C.int(cluster[i])
	}
	// The parameters travel in C memory: cgo forbids passing Go memory
	// that holds Go pointers, and a [][]byte is such memory.
	n := len(params)
	total := 0
	for _, p := range params {
		total += len(p)
	}
	buf := C.malloc(C.size_t(total + n*int(unsafe.Sizeof(uintptr(0))) + n*4 + 1))
	defer C.free(buf)
	ptrs := unsafe.Slice((**C.uchar)(buf), n)
	sizes := unsafe.Slice((*C.int)(unsafe.Add(buf, n*int(unsafe.Sizeof(uintptr(0))))), n)
	data := unsafe.Add(buf, n*int(unsafe.Sizeof(uintptr(0)))+n*4)
	off := 0
	for i, p := range params {
		dst := unsafe.Add(data, off)
		if len(p) > 0 {
			copy(unsafe.Slice((*byte)(dst), len(p)), p)
		}
		ptrs[i] = (*C.uchar)(dst)
		sizes[i] = C.int(len(p))
		off += len(p)
	}
	var pp **C.uchar
	var ps *C.int
	if n > 0 {
		pp, ps = &ptrs[0], &sizes[0]
	}
	var msg [512]C.char
	if C.emu_launch_ex(cName(name), &dims[0], C.int(smemBytes), pp, ps, C.int(n), &msg[0], C.int(len(msg))) != 0 {
		return &KernelFault{Kernel: name, Why: C.GoString(&msg[0])}
	}
	return nil
}

// KernelFault is the error of an emulated kernel that failed as it ran
// (what a GPU reports as a kernel's fault).
type KernelFault struct{ Kernel, Why string }

func (f *KernelFault) Error() string { return fmt.Sprintf("emulation: kernel %s: %s", f.Kernel, f.Why) }

// SetScheduleSeed sets the seed of the schedule of the launches that follow
// and returns the one it replaces. The scheduler runs every thread until it
// blocks, round after round; with a seed other than 0 it also holds warps
// back for a few rounds at random, so that warps drift apart as they do on
// a GPU and a missing barrier between them shows. Each cluster of each
// kernel gets its own schedule from the seed, the same in every run. The
// seed is 1 unless the environment's DINOCLIP_EMU_SEED says otherwise (to
// look for races with other schedules); 0 keeps every warp in step. The
// seed applies when a kernel runs, not when it is queued: work a driver
// runs lazily, or a graph replays, takes the seed set at that time.
func SetScheduleSeed(seed uint64) uint64 {
	return uint64(C.emu_set_schedule_seed(C.uint64_t(seed)))
}

// CheckScheduleSeed refuses a DINOCLIP_EMU_SEED that is not an unsigned
// decimal integer, for a device to refuse as it opens: every launch
// refuses it too, and a launch's refusal reads as the kernel's.
func CheckScheduleSeed() error {
	var msg [256]C.char
	if C.emu_schedule_seed_error(&msg[0], C.int(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

// TensorMapLayout is what EncodeTensorMap needs of a validated tensor map
// spec.
type TensorMapLayout struct {
	ElemBytes   int
	SwizzleSpan int // bytes: 0 (none), 32, 64 or 128
	NaNFill     bool
	Base        uintptr
	Dims        []uint64
	Strides     []uint64 // bytes, dimensions 1..rank-1
	Box         []uint32
	ElemStrides []uint32 // one per dimension
}

// EncodeTensorMap writes the emulator's own layout of a tensor map (which
// its TMA copies decode) into 128 bytes.
func EncodeTensorMap(l TensorMapLayout) ([128]byte, error) {
	var out [128]byte
	rank := len(l.Dims)
	if rank < 1 || rank > 5 || len(l.Box) != rank || len(l.ElemStrides) != rank || len(l.Strides) != rank-1 {
		return out, fmt.Errorf("emulation: tensor map of rank %d with %d box, %d element-stride and %d stride entries",
			rank, len(l.Box), len(l.ElemStrides), len(l.Strides))
	}
	var dims [5]C.uint64_t
	var strides [5]C.uint64_t
	var box, es [5]C.uint32_t
	for i := 0; i < rank; i++ {
		dims[i], box[i], es[i] = C.uint64_t(l.Dims[i]), C.uint32_t(l.Box[i]), C.uint32_t(l.ElemStrides[i])
		if i > 0 {
			strides[i-1] = C.uint64_t(l.Strides[i-1])
		}
	}
	nan := 0
	if l.NaNFill {
		nan = 1
	}
	var cOut [128]C.uchar
	if msg := C.emu_encode_tensor_map(&cOut[0], C.int(rank), C.int(l.ElemBytes), C.int(l.SwizzleSpan), C.int(nan),
		C.uint64_t(l.Base), &dims[0], &strides[0], &box[0], &es[0]); msg != nil {
		return out, fmt.Errorf("emulation: tensor map: %s", C.GoString(msg))
	}
	for i := range out {
		out[i] = byte(cOut[i])
	}
	return out, nil
}

// Alloc returns bytes of emulated device memory, filled with 0xff bytes
// (NaN as float32), so that reading unwritten memory shows.
func Alloc(bytes int64) (uintptr, error) {
	p := uintptr(C.emu_alloc(C.int64_t(bytes)))
	if p == 0 {
		return 0, ErrOutOfMemory
	}
	return p, nil
}

// Free releases an allocation of Alloc; other addresses are ignored.
func Free(p uintptr) { C.emu_free(C.uintptr_t(p)) }

// Limit is the emulated device's memory, Used what the live allocations take.
func Limit() int64 { return int64(C.emu_limit()) }
func Used() int64  { return int64(C.emu_used()) }

// ToDevice, ToHost, Zero and Copy move bytes between host and emulated
// device memory (all synchronous).
func ToDevice(dst uintptr, src unsafe.Pointer, bytes int64) {
	C.emu_to_device(C.uintptr_t(dst), src, C.int64_t(bytes))
}
func ToHost(dst unsafe.Pointer, src uintptr, bytes int64) {
	C.emu_to_host(dst, C.uintptr_t(src), C.int64_t(bytes))
}
func Zero(dst uintptr, bytes int64) { C.emu_zero(C.uintptr_t(dst), C.int64_t(bytes)) }
func Copy(dst, src uintptr, bytes int64) {
	C.emu_copy(C.uintptr_t(dst), C.uintptr_t(src), C.int64_t(bytes))
}
