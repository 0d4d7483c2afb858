//go:build cuda && cudaemu

package emu

import (
	"maps"
	"slices"
	"testing"

	"github.com/dinoclip/dinoclip/internal/kernelhash"
)

// The emulator was generated from the kernels on disk. Go's build cache
// does not see them (the C++ #includes them from kernels/): after a kernel
// is edited, the emulator is rebuilt only once `go generate` records the
// new source in sources_gen.go; until then every emulated test would run
// the kernel as it was.
func TestBuiltFromTheKernels(t *testing.T) {
	disk, err := kernelhash.Sources("../../kernels")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(disk)) {
		if kernelSources[name] != disk[name] {
			t.Errorf("kernels/%s.cu (or a kernels/*.cuh) is not what the emulator was generated from: run `make generate`, which rebuilds it", name)
		}
	}
	for name := range kernelSources {
		if _, ok := disk[name]; !ok {
			t.Errorf("the emulator holds kernels/%s.cu, which is gone: run `make generate`", name)
		}
	}
}
