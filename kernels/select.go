package kernels

import (
	"errors"
	"fmt"
	"strings"
)

// A Path is one way to load every module: all of them as sm_90a cubins, or
// all as PTX. One path for all modules rather than a choice per module, so
// that the engine runs one consistent set of kernels and can say which in
// one line.
type Path struct {
	Key  string // for DINOCLIP_CUDA_KERNELS: "sm_90a", "ptx"
	Name string // for logs and descriptions: "sm_90a cubins", "portable PTX"
	// The GPUs it runs on, as compute capability major*10+minor: OnlyCC
	// exactly when non-zero, else MinCC and later.
	OnlyCC, MinCC int
	// MinDriver is the oldest driver that loads it, in cuDriverGetVersion's
	// form (1000*major + 10*minor: 13000 for CUDA 13.0).
	MinDriver int
	// Image returns a module's bytes for this path (PTX text or a cubin;
	// the driver's module loader takes both).
	Image func(module string) ([]byte, error)
}

// The paths, best first. The facts behind the limits are in
// docs/GPU-BUILD.md.
var (
	// SM90a is the sm_90a cubins of nvcc 13.0: Hopper only (code for an
	// "a" target runs on that exact architecture), from the driver of
	// CUDA 13.0 (r580) on.
	SM90a = Path{Key: "sm_90a", Name: "sm_90a cubins", OnlyCC: 90, MinDriver: 13000, Image: CubinSM90a}
	// PortablePTX is the compute_80 PTX of nvcc 11.8 (PTX ISA 7.8): any
	// GPU of compute capability 8.0 or later, JIT-compiled by a driver of
	// CUDA 11.8 (r520) or later.
	PortablePTX = Path{Key: "ptx", Name: "portable PTX", MinCC: 80, MinDriver: 11080, Image: func(m string) ([]byte, error) {
		s, err := PTX(m)
		return []byte(s), err
	}}
)

// Paths lists the paths whose images exist for every module, best first.
func Paths() []Path {
	var out []Path
	for _, p := range []Path{SM90a, PortablePTX} {
		complete := true
		for _, m := range Modules {
			if _, err := p.Image(m.Name); err != nil {
				complete = false
				break
			}
		}
		if complete {
			out = append(out, p)
		}
	}
	return out
}

// Only returns the path of paths whose Key is key (the value of the
// environment variable DINOCLIP_CUDA_KERNELS, which pins the engine to one
// path to compare them or to rule one out); an empty key keeps them all.
func Only(paths []Path, key string) ([]Path, error) {
	if key == "" {
		return paths, nil
	}
	var keys []string
	for _, p := range paths {
		if p.Key == key {
			return []Path{p}, nil
		}
		keys = append(keys, p.Key)
	}
	return nil, fmt.Errorf("kernels: DINOCLIP_CUDA_KERNELS=%q: no such compiled form, want one of %s (or unset)", key, strings.Join(keys, ", "))
}

// Choose returns the first of paths that a GPU of compute capability cc
// (major*10+minor) with driver version driver (cuDriverGetVersion's form)
// can run and that load accepts. load loads every module of a path and,
// when it fails, releases what it loaded; its error (a driver too old for
// the images, CUDA_ERROR_UNSUPPORTED_PTX_VERSION, NO_BINARY_FOR_GPU,
// INVALID_SOURCE, or anything else) moves the choice to the next path.
// notes says, one line each, why each better path was passed over; the
// error, when no path is left, says it for all of them.
func Choose(cc, driver int, paths []Path, load func(Path) error) (chosen Path, notes []string, err error) {
	if len(paths) == 0 {
		return Path{}, nil, errors.New("kernels: no compiled kernels to load (run make kernels)")
	}
	for _, p := range paths {
		if why := p.unsupported(cc, driver); why != "" {
			notes = append(notes, fmt.Sprintf("not using the %s: %s", p.Name, why))
			continue
		}
		if err := load(p); err != nil {
			notes = append(notes, fmt.Sprintf("not using the %s: loading them failed: %v", p.Name, err))
			continue
		}
		return p, notes, nil
	}
	return Path{}, notes, fmt.Errorf("kernels: no compiled form of the kernels runs on this GPU (compute capability %s, CUDA driver %s):\n  %s",
		ccString(cc), DriverString(driver), strings.Join(notes, "\n  "))
}

// unsupported says why a GPU and driver cannot run p, or "" when they can.
func (p Path) unsupported(cc, driver int) string {
	switch {
	case p.OnlyCC != 0 && cc != p.OnlyCC:
		return fmt.Sprintf("they run on compute capability %s only, this GPU is %s", ccString(p.OnlyCC), ccString(cc))
	case p.OnlyCC == 0 && cc < p.MinCC:
		return fmt.Sprintf("they need compute capability %s or later, this GPU is %s", ccString(p.MinCC), ccString(cc))
	case driver < p.MinDriver:
		return fmt.Sprintf("they need a driver of CUDA %s or later, this one is CUDA %s", DriverString(p.MinDriver), DriverString(driver))
	}
	return ""
}

func ccString(cc int) string { return fmt.Sprintf("%d.%d", cc/10, cc%10) }

// DriverString writes a cuDriverGetVersion number as CUDA's version:
// 13000 is "13.0", 12080 "12.8".
func DriverString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }
