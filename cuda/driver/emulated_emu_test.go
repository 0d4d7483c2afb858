//go:build cuda && cudaemu

package driver

// emulated: the kernels run in the host emulation, compiled for the host.
const emulated = true
