package sgemm

import "github.com/dinoclip/dinoclip/internal/exactfma"

// reference is the microkernel in pure Go, with an exactly rounded float32
// FMA: the definition the assembly kernels must match bit for bit. Its tile
// shape differs from theirs on purpose, so the tests also show that the
// result does not depend on the tiling, and is neither 6 nor a multiple of
// 8 wide or tall, so that its panels are packed by the Go loops, not the
// assembly the other kernels share (transposeRows, dealRows): a packing
// bug cannot hide by showing up in every kernel alike.
var reference = &kernel{name: "reference-go", mr: 4, nr: 4, run: referenceKernel}

func referenceKernel(k int, a, b, c []float32, ldc int, load bool) {
	const mr, nr = 4, 4
	var acc [mr][nr]float32
	if load {
		for i := range mr {
			copy(acc[i][:], c[i*ldc:i*ldc+nr])
		}
	}
	for p := 0; p < k; p++ {
		ap, bp := a[p*mr:(p+1)*mr], b[p*nr:(p+1)*nr]
		for i := range mr {
			for j := range nr {
				acc[i][j] = exactfma.Float32(ap[i], bp[j], acc[i][j])
			}
		}
	}
	for i := range mr {
		copy(c[i*ldc:i*ldc+nr], acc[i][:])
	}
}
