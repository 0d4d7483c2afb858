//go:build cuda && cudaemu

package emu

/*
#cgo CXXFLAGS: -std=c++20 -O2
#include <stdint.h>
#include <stdlib.h>
int emu_launch(const char* name, int gx, int gy, int block, const uint64_t* args, int nargs);
uintptr_t emu_alloc(int64_t bytes);
void emu_free(uintptr_t p);
int64_t emu_limit(void);
int64_t emu_used(void);
void emu_to_device(uintptr_t dst, const void* src, int64_t bytes);
void emu_to_host(void* dst, uintptr_t src, int64_t bytes);
void emu_zero(uintptr_t dst, int64_t bytes);
void emu_copy(uintptr_t dst, uintptr_t src, int64_t bytes);
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	// The kernel sources are compiled here through #include from another
	// directory, which the go command does not track; package kernels
	// embeds them, so depending on it is what rebuilds this package when a
	// .cu or .cuh file changes.
	_ "github.com/dinoclip/dinoclip/kernels"
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

// Launch runs kernel name on a grid (gx, gy) of blocks of `block` threads;
// args holds one value per kernel parameter in its low bytes, as the CUDA
// driver reads them.
func Launch(name string, gx, gy, block int, args []uint64) error {
	var p *C.uint64_t
	if len(args) > 0 {
		p = (*C.uint64_t)(unsafe.Pointer(&args[0]))
	}
	switch C.emu_launch(cName(name), C.int(gx), C.int(gy), C.int(block), p, C.int(len(args))) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("emulation: no kernel %s", name)
	case 2:
		return fmt.Errorf("emulation: kernel %s: %d arguments do not match its parameters", name, len(args))
	case 3:
		return fmt.Errorf("emulation: kernel %s: block of %d threads, the emulation runs 256", name, block)
	default:
		return fmt.Errorf("emulation: kernel %s: divergent __syncthreads (some threads of a block ended while others wait)", name)
	}
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
