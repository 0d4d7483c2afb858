// Package vec32 holds the vectorised float32 elementwise passes of the CPU
// engine (package nn), in Go assembly for AVX2 on amd64.
//
// Each function does a prefix of its slices whose length is a multiple of
// the vector width and returns that length; the caller finishes the rest
// with its own scalar loop. A function returns 0 (does nothing) where the
// CPU lacks the instructions, on other architectures and under the purego
// build tag, so the scalar loop is always the definition and the assembly
// an exact, faster copy of it: the tests compare the two bit for bit.
package vec32
