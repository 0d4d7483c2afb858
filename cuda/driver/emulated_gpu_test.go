//go:build cuda && !cudaemu

package driver

// emulated: the kernels run on a GPU, from the module the driver loaded.
const emulated = false
