//go:build cuda && cudaemu

package cuda

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
	"time"
	"unsafe"

	"github.com/dinoclip/dinoclip/kernels"
)

// emuDriver runs the kernels compiled for the host (emu.h, emu*.cpp): the
// tags cuda and cudaemu together build the package without gorgonia.org/cu,
// so the engine and its tests run on a machine without a GPU.
type emuDriver struct{}

var errEmuOOM = errors.New("emulated device: out of memory")

var emuNames [numKernels]*C.char

func init() {
	for k := range numKernels {
		emuNames[k] = C.CString(kernelNames[k])
	}
}

// openDriver checks that every module's source is there. (Importing package
// kernels, which embeds the sources, is also what rebuilds the emulation
// when a .cu file changes: see kernels.Source.)
func openDriver() (driver, error) {
	for _, m := range kernels.Modules {
		if _, err := kernels.Source(m.Name); err != nil {
			return nil, err
		}
	}
	return emuDriver{}, nil
}

func (emuDriver) describe() string { return "host emulation of the CUDA kernels (no GPU)" }

func (emuDriver) name() string { return "host emulation" }

func (emuDriver) copyDevice(dst, src uintptr, bytes int64) error {
	C.emu_copy(C.uintptr_t(dst), C.uintptr_t(src), C.int64_t(bytes))
	return nil
}

// The emulation is synchronous: an event is the wall-clock time at which it
// was recorded.
func (emuDriver) newEvent() (event, error) { return new(time.Time), nil }

func (emuDriver) record(ev event) error {
	*ev.(*time.Time) = time.Now()
	return nil
}

func (emuDriver) elapsed(start, end event) (float64, error) {
	return end.(*time.Time).Sub(*start.(*time.Time)).Seconds(), nil
}

func (emuDriver) destroyEvent(event) error { return nil }

func (emuDriver) alloc(bytes int64) (uintptr, error) {
	p := uintptr(C.emu_alloc(C.int64_t(bytes)))
	if p == 0 {
		return 0, errEmuOOM
	}
	return p, nil
}

func (emuDriver) free(p uintptr) error { C.emu_free(C.uintptr_t(p)); return nil }

func (emuDriver) zero(p uintptr, bytes int64) error {
	C.emu_zero(C.uintptr_t(p), C.int64_t(bytes))
	return nil
}

func (emuDriver) toDevice(dst uintptr, src unsafe.Pointer, bytes int64) error {
	C.emu_to_device(C.uintptr_t(dst), src, C.int64_t(bytes))
	return nil
}

func (emuDriver) toHost(dst unsafe.Pointer, src uintptr, bytes int64) error {
	C.emu_to_host(dst, C.uintptr_t(src), C.int64_t(bytes))
	return nil
}

func (emuDriver) launch(k kernel, gx, gy, block int, args []uint64) error {
	var p *C.uint64_t
	if len(args) > 0 {
		p = (*C.uint64_t)(unsafe.Pointer(&args[0]))
	}
	switch C.emu_launch(emuNames[k], C.int(gx), C.int(gy), C.int(block), p, C.int(len(args))) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("emulation: no kernel %s", k)
	case 2:
		return fmt.Errorf("emulation: kernel %s: %d arguments do not match its parameters", k, len(args))
	case 3:
		return fmt.Errorf("emulation: kernel %s: block of %d threads, the emulation runs 256", k, block)
	default:
		return fmt.Errorf("emulation: kernel %s: divergent __syncthreads (some threads of a block ended while others wait)", k)
	}
}

func (emuDriver) sync() error { return nil }

func (emuDriver) memInfo() (free, total int64, err error) {
	l := int64(C.emu_limit())
	return l - int64(C.emu_used()), l, nil
}

func (emuDriver) isOutOfMemory(err error) bool { return errors.Is(err, errEmuOOM) }

func (emuDriver) close() error { return nil }
