package vec32

import (
	"flag"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// ulps is the distance between a and b in units of the last place of b.
func ulps(a float32, b float64) float64 {
	ulp := float64(math.Nextafter32(float32(math.Abs(b)), float32(math.Inf(1)))) - math.Abs(float64(float32(b)))
	if ulp == 0 || math.IsInf(ulp, 0) {
		ulp = math.SmallestNonzeroFloat32
	}
	return math.Abs(float64(a)-b) / ulp
}

// phi64 is Φ(x) in float64 through math.Erfc, accurate to a few ulp in
// both tails (1 + math.Erf(x/√2) is the same value where it does not
// cancel, and the test checks that agreement too).
func phi64(x float64) float64 { return math.Erfc(-x/math.Sqrt2) / 2 }

// geluStride is the step between the float32s TestGELUBounds checks;
// -gelu.stride=1 checks every float32 in [-16, 16] (about 2.2 billion, some
// minutes on two cores).
var geluStride = flag.Uint("gelu.stride", 97, "check every `n`th float32 in [-16, 16] for the GELU bounds (-short: 997)")

// geluWorst is the worst error seen in a part of TestGELUBounds' sweep.
type geluWorst struct {
	f, g   float64 // ulp
	fx, gx float32 // where
}

// TestGELUBounds walks every geluStride-th float32 in [-16, 16] (about 23
// million values, both signs; -short: every 997th) and checks the bounds
// stated in gelu.go, through GELUs and GELUGradMul, the vectorised passes
// the engine calls (TestGELUSlices checks they equal GELU and GELUGrad bit
// for bit). The sweep is cut into chunks, checked on all processors.
func TestGELUBounds(t *testing.T) {
	stride := uint32(*geluStride)
	if testing.Short() {
		stride = 997
	}
	if stride == 0 {
		t.Fatal("-gelu.stride 0")
	}
	const chunk = 1 << 20 // bit patterns a chunk
	end := math.Float32bits(16)
	var (
		mu    sync.Mutex
		worst geluWorst
		wg    sync.WaitGroup
		next  atomic.Uint64
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				lo := next.Add(chunk) - chunk
				if lo > uint64(end) {
					return
				}
				w := geluChunk(t, uint32(lo), uint32(min(lo+chunk, uint64(end)+1)), stride)
				mu.Lock()
				if w.f > worst.f {
					worst.f, worst.fx = w.f, w.fx
				}
				if w.g > worst.g {
					worst.g, worst.gx = w.g, w.gx
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("float32s in [-16, 16] at stride %d: GELU: worst %.3f ulp at %g; derivative: worst %.3f ulp of max(|Φ|, |xφ|) at %g", stride, worst.f, worst.fx, worst.g, worst.gx)
	if worst.f > 3 {
		t.Errorf("GELU(%g) is %.3f ulp from the exact value, bound 3", worst.fx, worst.f)
	}
	if worst.g > 3 {
		t.Errorf("GELUGrad(%g) is %.3f ulp of max(|Φ|, |xφ|) from the exact value, bound 3", worst.gx, worst.g)
	}
}

// geluChunk checks x and -x for the bit patterns x in [lo, hi) that are
// multiples of stride.
func geluChunk(t *testing.T, lo, hi, stride uint32) geluWorst {
	var xs []float32
	for bits := (lo + stride - 1) / stride * stride; bits < hi; bits += stride {
		x := math.Float32frombits(bits)
		xs = append(xs, x, -x)
	}
	f, g := make([]float32, len(xs)), make([]float32, len(xs))
	for i := range g {
		g[i] = 1
	}
	GELUs(f, xs)
	GELUGradMul(g, g, xs)
	var w geluWorst
	for i, x := range xs {
		xf := float64(x)
		p := phi64(xf)
		if xf > -5 && i%64 == 0 {
			if d := math.Abs(p - (1+math.Erf(xf/math.Sqrt2))/2); !(d <= 1e-15) {
				t.Errorf("x %g: the references disagree by %g", x, d)
			}
		}
		want := xf * p
		if math.Abs(want) >= minResult {
			if u := ulps(f[i], want); !(u <= w.f) {
				w.f, w.fx = u, x
			}
		}
		dens := math.Exp(-xf*xf/2) / math.Sqrt(2*math.Pi)
		wantG := p + xf*dens
		scale := math.Max(p, math.Abs(xf*dens))
		if scale >= minResult {
			if u := math.Abs(float64(g[i])-wantG) / ulpOf(scale); !(u <= w.g) {
				w.g, w.gx = u, x
			}
		}
	}
	return w
}

// ulpOf is the float32 ulp at |v|.
func ulpOf(v float64) float64 {
	f := float32(math.Abs(v))
	return float64(math.Nextafter32(f, float32(math.Inf(1)))) - float64(f)
}

func TestGELUSpecialValues(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	for _, c := range []struct{ x, f, g float32 }{
		{0, 0, 0.5}, {inf, inf, 1}, {100, 100, 1}, {-100, 0, 0}, {14, 14, 1},
	} {
		if f, g := GELU(c.x), GELUGrad(c.x); f != c.f || g != c.g {
			t.Errorf("x %g: GELU %g, derivative %g; want %g, %g", c.x, f, g, c.f, c.g)
		}
	}
	if f, g := GELU(nan), GELUGrad(nan); f == f || g == g {
		t.Errorf("NaN: GELU %g, derivative %g; want NaN", f, g)
	}
	if f := GELU(-inf); f == f {
		t.Errorf("GELU(-Inf) = %g, want NaN as x Φ(x) = -Inf * 0", f)
	}
}

// minResult is where the bounds start (|x| < 12.6 for GELU, 12.8 for its
// derivative): below it in magnitude the results have only absolute
// accuracy, and from |x| = 13.2 on they are 0 (or x).
const minResult = 0x1p-116

// TestGELUPieceOffsetExact checks, for every float32 a in [0, limit), that
// h = a - centre of a's piece (geluPiece) is exact, as gelu.go's error
// analysis assumes: the centres are 0 or within a factor 2 of every a
// whose rounded a+1 selects their piece.
func TestGELUPieceOffsetExact(t *testing.T) {
	end := math.Float32bits(geluC.limit[0])
	for bits := uint32(0); bits < end; bits++ {
		a := math.Float32frombits(bits)
		j, h := geluPiece(a)
		if float64(h) != float64(a)-float64(geluC.centre[j]) {
			t.Fatalf("a %g (piece %d, centre %g): h = %g is not exact", a, j, geluC.centre[j], h)
		}
	}
}
