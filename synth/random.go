package synth

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// Purposes name the independent random streams of a world (see the package
// documentation); an evaluation set's streams add its name.
const (
	purposeWorld    = "world"
	purposeTrain    = "train"
	purposeEval     = "eval/"
	purposeCaptions = "/captions"
	purposeShift    = "shift"
)

// mix64 is the SplitMix64 finalizer: a bijection on uint64 that spreads
// every input bit over the whole output, so that nearby inputs (row 7, row
// 8) give unrelated PCG seeds. Seeding PCG with raw consecutive values would
// start streams whose states differ by a fixed amount, a known source of
// correlation between LCG-based streams.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// golden is 2^64 divided by the golden ratio, the usual SplitMix64 step.
const golden = 0x9e3779b97f4a7c15

// streamKey names the stream family (seed, purpose).
func streamKey(seed uint64, purpose string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(purpose))
	return mix64(seed ^ mix64(h.Sum64()+golden))
}

// sampler draws uniform and standard normal deviates from one PCG stream,
// reproducibly on every platform (see the package documentation).
type sampler struct {
	pcg      rand.PCG
	spare    float64 // the polar method makes normals in pairs
	hasSpare bool
}

// reset starts the stream for item index of the family key.
func (s *sampler) reset(key, index uint64) {
	a := mix64(key ^ mix64(index+golden))
	b := mix64(a + golden)
	s.pcg.Seed(a, b)
	s.hasSpare = false
}

// uniform returns a uniform deviate in [0, 1) with 53 random bits.
func (s *sampler) uniform() float64 {
	return float64(s.pcg.Uint64()>>11) * 0x1p-53
}

// normal returns a standard normal deviate by Marsaglia's polar method,
// which needs only a logarithm and a square root; math/rand's ziggurat would
// bring in math.Exp and math.Log, whose last bits differ between platforms.
func (s *sampler) normal() float64 {
	if s.hasSpare {
		s.hasSpare = false
		return s.spare
	}
	for {
		// Doubling is exact, so these two lines round the same way fused
		// or not; the conversions keep the sum of squares unfused.
		u := float64(2*s.uniform()) - 1
		v := float64(2*s.uniform()) - 1
		r := float64(u*u) + float64(v*v)
		if r >= 1 || r == 0 {
			continue
		}
		f := math.Sqrt(float64(-2*logUnit(r)) / r)
		s.spare = float64(v * f)
		s.hasSpare = true
		return float64(u * f)
	}
}

// noise returns a cheap bell-shaped deviate with mean 0 and variance 1 for
// the per-channel noise, of which a row needs over a thousand: the
// Irwin–Hall sum of four 16-bit uniforms from one 64-bit draw, scaled. It is
// exact integer arithmetic plus one rounded product, about ten times faster
// than normal, and differs from a normal only in having no tails beyond
// ±2√3 (noise that is added to a signal needs no tails).
func (s *sampler) noise() float64 {
	u := s.pcg.Uint64()
	sum := int64(u&0xffff) + int64(u>>16&0xffff) + int64(u>>32&0xffff) + int64(u>>48)
	// Each 16-bit uniform has mean 65535/2 and variance (65536²-1)/12, so
	// the sum has mean 131070 and a standard deviation of 65536/√3 within
	// 1e-10.
	return float64(sum-131070) * (math.Sqrt(3) / 65536)
}

// logUnit returns the natural logarithm of x in (0, 1) using only
// correctly rounded arithmetic, so every platform gets the same bits: x =
// m·2^e with m in [√½, √2), and ln m = 2·atanh(t), t = (m-1)/(m+1), by its
// series in t² (|t| <= 0.172, so ten terms reach double precision).
func logUnit(x float64) float64 {
	m, e := math.Frexp(x) // exact: m in [0.5, 1)
	if m < math.Sqrt2/2 {
		m *= 2 // exact
		e--
	}
	t := (m - 1) / (m + 1)
	t2 := float64(t * t)
	// Horner on 1 + t²/3 + t⁴/5 + ... + t¹⁸/19.
	p := 1.0 / 19
	for k := 17; k >= 1; k -= 2 {
		p = float64(p*t2) + 1/float64(k)
	}
	return float64(float64(e)*math.Ln2) + float64(float64(2*t)*p)
}
