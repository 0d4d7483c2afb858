//go:build cuda

package driver

import "unsafe"

// Driver is what a cuda.Device runs on. Kernels are named once, at Open,
// and launched by their index in that list. Every method must be called
// from the one OS thread that called Open (CUDA contexts are per thread).
type Driver interface {
	// Describe is one line on the device (name, capability, memory,
	// driver, the kernel module in use); Name is the device's name alone.
	Describe() string
	Name() string

	Alloc(bytes int64) (uintptr, error)
	Free(p uintptr) error
	// Zero, ToDevice, ToHost and CopyDevice are ordered on the stream.
	// Zero clears 32-bit words: bytes is a multiple of 4.
	// ToDevice has read src when it returns (src is pageable memory;
	// Extended.UploadAsync copies from pinned memory); ToHost returns once
	// dst is written.
	Zero(p uintptr, bytes int64) error
	ToDevice(dst uintptr, src unsafe.Pointer, bytes int64) error
	ToHost(dst unsafe.Pointer, src uintptr, bytes int64) error
	CopyDevice(dst, src uintptr, bytes int64) error
	MemInfo() (free, total int64, err error)
	IsOutOfMemory(err error) bool
	// IsKernelFault says whether err is a kernel's fault as it ran (an
	// illegal or misaligned address, an illegal instruction, a trap, ...),
	// which on a GPU takes the context with it: not an error of memory,
	// of a copy or of the device as a whole.
	IsKernelFault(err error) bool

	// Launch runs kernel k (an index into Open's list) on a grid (gx, gy)
	// of blocks of `block` threads; args holds one value per kernel
	// parameter in its low bytes, as the driver reads them.
	Launch(k, gx, gy, block int, args []uint64) error
	// Sync waits for the stream; an asynchronous kernel fault surfaces here.
	Sync() error

	// Events time the stream's work: Record marks the point the stream has
	// reached; Elapsed is the time between two recorded events once both
	// have passed (after Sync). WaitEvent waits until the stream has passed
	// ev's last Record, and no longer: the host reads what the work before
	// it wrote (an asynchronous copy into pinned memory) while later work
	// keeps the device busy.
	NewEvent() (Event, error)
	Record(ev Event) error
	WaitEvent(ev Event) error
	Elapsed(start, end Event) (seconds float64, err error)
	DestroyEvent(ev Event) error

	// Close releases the stream, the modules and the context.
	Close() error
}

// Event is a driver's event handle.
type Event any
