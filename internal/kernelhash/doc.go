// Package kernelhash names the source of each kernel module by a hash, so
// that the host emulator can tell it was generated from the kernels on
// disk. Go's build cache does not see the kernels: the emulator's C++
// files #include them from another directory, and a kernel edited since
// `go generate` would otherwise be tested as it was before the edit.
package kernelhash
