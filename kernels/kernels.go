package kernels

//go:generate go run ./internal/gen -root ..

import (
	"embed"
	"fmt"
	"strconv"
	"strings"
)

//go:embed ptx/*.ptx sm90a/*.cubin
var images embed.FS

// The sources are embedded too: the host emulation of package cuda
// (tags cuda,cudaemu) compiles them with cgo, and the go command tracks
// embedded files but not a C++ file's includes from another directory, so
// importing this package is what makes a changed .cu rebuild the emulation.
// Nothing reads them at run time.
//
//go:embed *.cu *.cuh
var _ embed.FS

// budgets is budgets.tsv: each kernel's registers and static shared memory
// per target, as ptxas reports them (make check-kernels holds it current).
//
//go:embed budgets.tsv
var budgets string

// StaticShared is the static shared memory of kernel in bytes (the
// largest over its targets in budgets.tsv), and whether the table has the
// kernel. A launch's dynamic shared memory comes on top of it: within the
// default 48 KiB limit without opting in, within the opt-in maximum when
// raised.
func StaticShared(kernel string) (int, bool) {
	most, found := 0, false
	for _, line := range strings.Split(budgets, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] != kernel {
			continue
		}
		if n, err := strconv.Atoi(f[3]); err == nil {
			most, found = max(most, n), true
		}
	}
	return most, found
}

// ParamSizes is the size in bytes of each parameter of kernel, as its
// signature declares them (modules_gen.go), and whether kernel exists.
func ParamSizes(kernel string) ([]int, bool) {
	sizes, ok := paramSizes[kernel]
	return sizes, ok
}

// CheckParams checks a launch's parameters against kernel's signature:
// their count, and the size of each (sizes[i]; nil checks the count
// alone, of parameters passed in 8-byte slots). A driver copies as many
// bytes as the kernel declares, so a short parameter would be padded with
// whatever lies beyond it.
func CheckParams(kernel string, count int, sizes func(i int) int) error {
	want, ok := paramSizes[kernel]
	if !ok {
		return fmt.Errorf("kernel %s: not in the kernels' signature table", kernel)
	}
	if count != len(want) {
		return fmt.Errorf("kernel %s: %d parameters given, it has %d", kernel, count, len(want))
	}
	for i := range count {
		if sizes != nil && sizes(i) != want[i] {
			return fmt.Errorf("kernel %s: parameter %d is %d bytes, given %d", kernel, i, want[i], sizes(i))
		}
	}
	return nil
}

// Module is one compiled source file. Modules (modules_gen.go) is generated
// from the sources by `go generate ./kernels`.
type Module struct {
	Name    string   // base name of the source: "gemm" for kernels/gemm.cu
	Kernels []string // its entry points (extern "C" __global__ functions)
}

// PTX returns the PTX text of module name.
func PTX(name string) (string, error) {
	b, err := images.ReadFile("ptx/" + name + ".ptx")
	if err != nil {
		return "", fmt.Errorf("kernels: no PTX for module %q (run make kernels): %w", name, err)
	}
	return string(b), nil
}

// CubinSM90a returns the sm_90a cubin of module name.
func CubinSM90a(name string) ([]byte, error) {
	b, err := images.ReadFile("sm90a/" + name + ".cubin")
	if err != nil {
		return nil, fmt.Errorf("kernels: no sm_90a cubin for module %q (run make kernels): %w", name, err)
	}
	return b, nil
}
