// Package emu is the host emulator of the CUDA kernels: the sources of
// ../../kernels compiled as C++ (emu.h maps the CUDA built-ins and
// primitives; runtime.cpp runs a launch: blocks one after another, the
// threads of a block as fibers on the calling OS thread) with a small
// device-memory allocator. Package cuda/driver wraps it as the driver of
// the build tags cuda,cudaemu, so the GPU engine, its launch layer and its
// tests run on a machine without a GPU.
//
// Only the files with the build tags cuda and cudaemu have code; the
// default build compiles this documentation alone.
package emu
