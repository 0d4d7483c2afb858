//go:build cuda

package cuda

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/nn"
)

// fullDriver is a driver with the extended calls, as every driver the
// engine runs on is: the test drivers that wrap the device's own embed it.
type fullDriver interface {
	driver.Driver
	driver.Extended
}

var (
	sharedOnce sync.Once
	sharedDev  *Device
	sharedErr  error
)

// testDevice is one Device shared by the kernel tests of the process.
func testDevice(t *testing.T) *Device {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDev, sharedErr = Open()
		if sharedErr == nil {
			t.Logf("kernel tests on %s", sharedDev)
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedDev
}

// on runs f on d's worker thread and fails the test on error.
func on(t *testing.T, d *Device, f func() error) {
	t.Helper()
	if err := d.do(f); err != nil {
		t.Fatal(err)
	}
}

// setAside sets a process's verdict (v, under mu) to its zero value, no
// check run, for the test, and restores it afterwards.
func setAside[V any](t *testing.T, mu *sync.Mutex, v *V) {
	mu.Lock()
	kept := *v
	*v = *new(V)
	mu.Unlock()
	t.Cleanup(func() {
		mu.Lock()
		*v = kept
		mu.Unlock()
	})
}

// devAlloc allocates n elements (freed at the end of the test); their
// contents are undefined.
func devAlloc[T any](t *testing.T, d *Device, n int) buf[T] {
	t.Helper()
	var b buf[T]
	on(t, d, func() error {
		p, err := d.alloc(int64(max(n, 1) * sizeOf[T]()))
		b = buf[T]{p: p, n: n}
		return err
	})
	t.Cleanup(func() { d.do(func() error { return d.free(b.p) }) })
	return b
}

// devCopy allocates and fills a device copy of host.
func devCopy[T any](t *testing.T, d *Device, host []T) buf[T] {
	t.Helper()
	b := devAlloc[T](t, d, len(host))
	on(t, d, func() error { return upload(d, b, host) })
	return b
}

// fetch copies a device buffer back.
func fetch[T any](t *testing.T, d *Device, b buf[T]) []T {
	t.Helper()
	out := make([]T, b.n)
	on(t, d, func() error { return download(d, out, b) })
	return out
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func nanFill(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

// within fails the test when nn.RelDiff(got, want) > tol.
func within[A, B float32 | float64](t *testing.T, what string, got []A, want []B, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("%s: element %d is %v", what, i, v)
		}
	}
	d := nn.RelDiff(got, want)
	if d > tol {
		t.Errorf("%s: relative difference %.3g > %g", what, d, tol)
	} else {
		t.Logf("%s: relative difference %.3g (tolerance %g)", what, d, tol)
	}
}

// unitNormals is unitRandn in a test: rows×dim normal values, every row
// of unit length.
func unitNormals(t *testing.T, rng *rand.Rand, rows, dim int) []float32 {
	t.Helper()
	u, err := unitRandn(rng, rows, dim)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
