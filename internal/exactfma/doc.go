// Package exactfma computes a float32 fused multiply-add in pure Go with the
// bits of the hardware instruction (VFMADD231PS and its kin): x*y + z
// rounded once to float32, round to nearest even. The assembly kernels of
// internal/sgemm and internal/vec32 fuse; their Go definitions call this.
package exactfma
