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
// synchronous.
type emuDriver struct {
	names []string
}

// Open returns the emulated device; kernelNames are the entry points Launch
// will run (an unknown one fails at its launch).
func Open(kernelNames []string) (Driver, error) {
	if len(kernelNames) == 0 {
		return nil, errors.New("emulation: no kernels to load")
	}
	return emuDriver{names: kernelNames}, nil
}

func (emuDriver) Describe() string { return "host emulation of the CUDA kernels (no GPU)" }

func (emuDriver) Name() string { return "host emulation" }

func (emuDriver) CopyDevice(dst, src uintptr, bytes int64) error {
	emu.Copy(dst, src, bytes)
	return nil
}

// An event is the wall-clock time at which it was recorded.
func (emuDriver) NewEvent() (Event, error) { return new(time.Time), nil }

func (emuDriver) Record(ev Event) error {
	*ev.(*time.Time) = time.Now()
	return nil
}

func (emuDriver) Elapsed(start, end Event) (float64, error) {
	return end.(*time.Time).Sub(*start.(*time.Time)).Seconds(), nil
}

func (emuDriver) DestroyEvent(Event) error { return nil }

func (emuDriver) Alloc(bytes int64) (uintptr, error) { return emu.Alloc(bytes) }

func (emuDriver) Free(p uintptr) error { emu.Free(p); return nil }

func (emuDriver) Zero(p uintptr, bytes int64) error {
	emu.Zero(p, bytes)
	return nil
}

func (emuDriver) ToDevice(dst uintptr, src unsafe.Pointer, bytes int64) error {
	emu.ToDevice(dst, src, bytes)
	return nil
}

func (emuDriver) ToHost(dst unsafe.Pointer, src uintptr, bytes int64) error {
	emu.ToHost(dst, src, bytes)
	return nil
}

func (d emuDriver) Launch(k, gx, gy, block int, args []uint64) error {
	if k < 0 || k >= len(d.names) {
		return fmt.Errorf("emulation: kernel index %d of %d", k, len(d.names))
	}
	return emu.Launch(d.names[k], gx, gy, block, args)
}

func (emuDriver) Sync() error { return nil }

func (emuDriver) MemInfo() (free, total int64, err error) {
	l := emu.Limit()
	return l - emu.Used(), l, nil
}

func (emuDriver) IsOutOfMemory(err error) bool { return errors.Is(err, emu.ErrOutOfMemory) }

func (emuDriver) Close() error { return nil }
