//go:build cuda

package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/kernels"
	"github.com/dinoclip/dinoclip/nn"
)

// openDevice opens a Device of the test's own (the check changes the
// device's path), closed at the end of the test, and says whether it has
// the wgmma path (the sm_90a cubins: the emulator's default, a Hopper
// GPU's).
func openDevice(t *testing.T) (*Device, bool) {
	t.Helper()
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var wgmma bool
	on(t, d, func() error { wgmma = d.tc.wgmma; return nil })
	return d, wgmma
}

// freshVerdict forgets the process's verdict for the test, so that the
// next check runs, and restores it afterwards.
func freshVerdict(t *testing.T) {
	setAside(t, &gemmVerdict.Mutex, &gemmVerdict.gemmOutcome)
}

// TestCheckBF16GEMMsPasses: a bf16 engine's open runs the check, and on
// right kernels the device keeps its path (wgmma where the sm_90a cubins
// are loaded), says nothing of a fallback, and gets back the memory the
// check used; a later device of the process takes the verdict without a
// check of its own, a fallback or a refusal alike.
func TestCheckBF16GEMMsPasses(t *testing.T) {
	freshVerdict(t)
	e, err := NewBF16Engine(nn.Config{InputDim: 64, HiddenDim: 64, OutputDim: 32, Blocks: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d := e.dev
	var wgmma, checked bool
	var fallback string
	on(t, d, func() error { wgmma, checked, fallback = d.tc.wgmma, d.tc.checked, d.tc.fallback; return nil })
	cubins := d.drv.(driver.Extended).KernelPath() == kernels.SM90a.Key
	if !checked || wgmma != cubins || fallback != "" || strings.Contains(d.String(), "mma.sync") {
		t.Fatalf("after the open: checked %v, wgmma %v (sm_90a cubins %v), fallback %q, %s", checked, wgmma, cubins, fallback, d)
	}
	var inUse, after int64
	on(t, d, func() error {
		inUse = d.inUse
		fb, unchecked, broken, err := d.runGEMMCheck()
		after, wgmma = d.inUse, d.tc.wgmma
		return errors.Join(err, broken, func() error {
			if fb != "" || unchecked != "" {
				return fmt.Errorf("a fallback %q, unchecked %q", fb, unchecked)
			}
			return nil
		}())
	})
	if after != inUse || wgmma != cubins {
		t.Fatalf("a second check: %d bytes in use (%d before), wgmma %v", after, inUse, wgmma)
	}

	// Later devices take the verdict.
	gemmVerdict.Lock()
	gemmVerdict.fallback = "a test's fallback"
	gemmVerdict.Unlock()
	d2, wgmma2 := openDevice(t)
	on(t, d2, d2.checkBF16GEMMs)
	on(t, d2, func() error { wgmma, fallback = d2.tc.wgmma, d2.tc.fallback; return nil })
	if wgmma2 && (wgmma || fallback != "a test's fallback") {
		t.Fatalf("a later device after a fallback: wgmma %v, fallback %q", wgmma, fallback)
	}
	gemmVerdict.Lock()
	gemmVerdict.broken = errors.New("a test's refusal")
	gemmVerdict.Unlock()
	d3, _ := openDevice(t)
	if err := d3.do(d3.checkBF16GEMMs); err == nil || err.Error() != "a test's refusal" {
		t.Fatalf("a later device after a refusal: %v", err)
	}
}

// swizzleLiar encodes every tensor map with swizzle instead of the one
// asked for: TMA then fills shared memory in another order than the wgmma
// descriptors read (SwizzleNone), or the map is refused (Swizzle64B is
// narrower than the kernels' 128-byte box rows): a wgmma kernel that
// computes wrong values, or that cannot launch. The mma.sync kernels use
// no tensor map.
type swizzleLiar struct {
	fullDriver
	swizzle driver.Swizzle
}

func (l swizzleLiar) EncodeTensorMap(spec driver.TensorMapSpec) (driver.TensorMap, error) {
	spec.Swizzle = l.swizzle
	return l.fullDriver.EncodeTensorMap(spec)
}

// paramLiar launches the kernels whose names match with their first int
// parameter equal to from changed to to, counting those launches in hits:
// K 8 short of the check's drops the last 8 products of every sum (a
// kernel that computes wrong values: shortK), M 8 rows taller writes past
// the end of C (tallM; M comes before N and K).
type paramLiar struct {
	fullDriver
	match    func(name string) bool
	from, to uint32
	hits     *int
}

func (l paramLiar) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	if l.match(launch.Kernel(k).String()) {
		for i, p := range params {
			if len(p) == 4 && binary.LittleEndian.Uint32(p) == l.from {
				params[i] = binary.LittleEndian.AppendUint32(nil, l.to)
				*l.hits++
				break
			}
		}
	}
	return l.fullDriver.LaunchEx(k, cfg, params)
}

func shortK(f fullDriver, match func(string) bool, hits *int) paramLiar {
	return paramLiar{f, match, checkK, checkK - 8, hits}
}

func tallM(f fullDriver, match func(string) bool, hits *int) paramLiar {
	return paramLiar{f, match, checkM, checkM + 8, hits}
}

func mmaKernel(name string) bool { return strings.Contains(name, "_mma_") }

// launchRefuser refuses the launches of the kernels whose names match, the
// context sound after it, as a driver refuses a kernel that asks for more
// than the GPU has.
type launchRefuser struct {
	fullDriver
	match func(name string) bool
}

func (l launchRefuser) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	if l.match(launch.Kernel(k).String()) {
		return errors.New("a test's refused launch")
	}
	return l.fullDriver.LaunchEx(k, cfg, params)
}

// TestCheckBF16GEMMsVerdicts: a wgmma kernel that computes wrong values or
// cannot launch moves the device to the mma.sync kernels, with a reason
// naming the first case that failed, in the device's description, and the
// GEMMs after it are right; wrong mma.sync kernels beside right wgmma ones
// leave the wgmma path running; wrong mma.sync kernels with no right wgmma
// ones (or none at all) refuse the bf16 engine, naming fp32, and
// DINOCLIP_CUDA_CHECK=warn where a path's values were wrong (not where
// none can start). Under that setting, wrong values refuse nothing: a path
// that passed runs, else the wgmma kernels where they start (every kind of
// them), else the mma.sync ones, unchecked, which the device's description
// says.
func TestCheckBF16GEMMsVerdicts(t *testing.T) {
	wgmmaWrong := func(f fullDriver) fullDriver { return swizzleLiar{f, driver.SwizzleNone} }
	wgmmaRefused := func(f fullDriver) fullDriver { return swizzleLiar{f, driver.Swizzle64B} }
	mmaWrong := func(f fullDriver) fullDriver { return shortK(f, mmaKernel, new(int)) }
	mmaRefused := func(f fullDriver) fullDriver { return launchRefuser{f, mmaKernel} }
	// (The wgmma weight gradient, a kind the check runs after the first.)
	wgmmaTNRefused := func(f fullDriver) fullDriver {
		return launchRefuser{f, func(name string) bool { return name == "gemm_bf16_tn_f32" }}
	}
	for _, c := range []struct {
		name      string
		lie       func(fullDriver) fullDriver
		noWgmma   bool   // run as a device without the wgmma path
		warn      bool   // DINOCLIP_CUDA_CHECK=warn
		wgmma     bool   // the path after the check
		why       string // the fallback's start
		unchecked string // the start of why the path that runs is unchecked
		err       string // the refusal's words
	}{
		{name: "wgmma wrong", lie: func(f fullDriver) fullDriver { return swizzleLiar{f, driver.SwizzleNone} }, why: "gemm_bf16_nt_f32: C["},
		{name: "wgmma tensor maps refused", lie: func(f fullDriver) fullDriver { return swizzleLiar{f, driver.Swizzle64B} }, why: "gemm_bf16_nt_f32 failed: "},
		{name: "mma.sync wrong", lie: func(f fullDriver) fullDriver { return shortK(f, mmaKernel, new(int)) }, wgmma: true},
		{name: "mma.sync wrong, no wgmma", lie: func(f fullDriver) fullDriver { return shortK(f, mmaKernel, new(int)) }, noWgmma: true,
			err: "the bf16 GEMMs fail their check on this GPU (mma.sync: gemm_bf16_nt_f32: C["},
		{name: "both wrong", lie: func(f fullDriver) fullDriver { return shortK(swizzleLiar{f, driver.SwizzleNone}, mmaKernel, new(int)) },
			err: "(wgmma: gemm_bf16_nt_f32: C["},
		{name: "wgmma refused, mma.sync wrong", lie: func(f fullDriver) fullDriver { return mmaWrong(wgmmaRefused(f)) },
			err: "(wgmma: gemm_bf16_nt_f32 failed: "},
		{name: "both refused", lie: func(f fullDriver) fullDriver { return mmaRefused(wgmmaRefused(f)) }, err: "(wgmma: gemm_bf16_nt_f32 failed: "},
		{name: "warn: wgmma wrong", lie: wgmmaWrong, warn: true, why: "gemm_bf16_nt_f32: C["},
		{name: "warn: wgmma tensor maps refused", lie: wgmmaRefused, warn: true, why: "gemm_bf16_nt_f32 failed: "},
		{name: "warn: wgmma refused, mma.sync wrong", lie: func(f fullDriver) fullDriver { return mmaWrong(wgmmaRefused(f)) },
			warn: true, why: "gemm_bf16_nt_f32 failed: ", unchecked: "mma.sync: gemm_bf16_nt_f32: C["},
		{name: "warn: mma.sync wrong, no wgmma", lie: mmaWrong, noWgmma: true, warn: true, unchecked: "mma.sync: gemm_bf16_nt_f32: C["},
		{name: "warn: both wrong", lie: func(f fullDriver) fullDriver { return mmaWrong(wgmmaWrong(f)) },
			warn: true, wgmma: true, unchecked: "wgmma: gemm_bf16_nt_f32: C["},
		{name: "warn: wgmma wrong, mma.sync refused", lie: func(f fullDriver) fullDriver { return mmaRefused(wgmmaWrong(f)) },
			warn: true, wgmma: true, unchecked: "wgmma: gemm_bf16_nt_f32: C["},
		{name: "warn: both wrong, a later wgmma kind refused", lie: func(f fullDriver) fullDriver { return mmaWrong(wgmmaTNRefused(wgmmaWrong(f))) },
			warn: true, why: "gemm_bf16_tn_f32 failed: ", unchecked: "mma.sync: gemm_bf16_nt_f32: C["},
		{name: "warn: mma.sync refused, no wgmma", lie: mmaRefused, noWgmma: true, warn: true, err: "(mma.sync: gemm_bf16_nt_f32 failed: "},
		{name: "warn: both refused", lie: func(f fullDriver) fullDriver { return mmaRefused(wgmmaRefused(f)) }, warn: true,
			err: "(wgmma: gemm_bf16_nt_f32 failed: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.warn && testing.Short() {
				// (Decisions, not kernels: the AddressSanitizer pass, which
				// is -short, has the kernels from the other cases.)
				t.Skip("the cases under DINOCLIP_CUDA_CHECK=warn run in the emulator pass without -short")
			}
			d, wgmma := openDevice(t)
			if !wgmma && !c.noWgmma {
				t.Skipf("%s runs no wgmma kernels", d)
			}
			freshVerdict(t)
			if c.warn {
				t.Setenv(checkEnv, "warn")
			}
			err := d.do(func() error {
				liar := c.lie(d.drv.(fullDriver))
				d.drv, d.tc.ext = liar, liar
				if c.noWgmma {
					d.tc.wgmma = false
				}
				return d.checkBF16GEMMs()
			})
			if c.err != "" {
				// The setting is named where it would run a path: one that
				// computed wrong values.
				hint := !strings.Contains(c.name, "refused") || strings.Contains(c.name, "wrong")
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "use --precision fp32") ||
					strings.Contains(err.Error(), checkEnv+"=warn, which runs it anyway") != hint {
					t.Fatalf("the check says %v, want an error with %q (naming %s: %v)", err, c.err, checkEnv, hint)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var after bool
			var fallback, unchecked string
			on(t, d, func() error { after, fallback, unchecked = d.tc.wgmma, d.tc.fallback, d.tc.unchecked; return nil })
			if after != c.wgmma || !strings.HasPrefix(fallback, c.why) || (c.why == "") != (fallback == "") ||
				!strings.HasPrefix(unchecked, c.unchecked) || (c.unchecked == "") != (unchecked == "") {
				t.Fatalf("after the check: wgmma %v, fallback %q, unchecked %q; want wgmma %v, a fallback starting %q, unchecked starting %q",
					after, fallback, unchecked, c.wgmma, c.why, c.unchecked)
			}
			if s := d.String(); c.unchecked != "" && !strings.Contains(s, "UNCHECKED bf16 GEMMs: they failed their check ("+unchecked+")") {
				t.Fatalf("description %q says nothing of the unchecked GEMMs", s)
			}
			if c.why == "" {
				return
			}
			if s := d.String(); !strings.Contains(s, "bf16 GEMMs on the mma.sync kernels") || !strings.Contains(s, fallback) {
				t.Fatalf("description %q says nothing of the fallback", s)
			}
			if c.unchecked != "" {
				return // (the GEMMs after it are as wrong as the check found them)
			}
			// The GEMMs after it (the driver still lies about tensor
			// maps, which mma.sync does not use) are right.
			on(t, d, func() error {
				g, err := d.newGEMMChecker()
				if err != nil {
					return err
				}
				defer g.close()
				why, _, err := g.check(checkCase{ntF32, 1, 1})
				if why != "" {
					return errors.New("after the fallback: " + why)
				}
				return err
			})
		})
	}
}

// TestGEMMCheckCatchesEachKernel: every case of the check fails on its own
// kind's kernel, on each path, computing wrong values (K short) and, for
// the forward f32 kernel, writing past C's end (M tall), while the same
// case on the other path passes; the reason names the case.
func TestGEMMCheckCatchesEachKernel(t *testing.T) {
	d, hasWgmma := openDevice(t)
	paths := []bool{false}
	if hasWgmma {
		paths = append(paths, true)
	}
	var inner fullDriver
	on(t, d, func() error { inner = d.drv.(fullDriver); return nil })
	type fault struct {
		name string
		lie  func(match func(string) bool, hits *int) fullDriver
	}
	short := fault{"K short", func(m func(string) bool, h *int) fullDriver { return shortK(inner, m, h) }}
	tall := fault{"M tall", func(m func(string) bool, h *int) fullDriver { return tallM(inner, m, h) }}
	for _, cs := range append(slices.Clone(checkCases), checkCase{}) {
		f := short
		if cs == (checkCase{}) {
			cs, f = checkCase{ntF32, 1, 1}, tall
		}
		for _, wgmma := range paths {
			kernel := gemmKinds[cs.kind].mma.String()
			if wgmma {
				kernel = gemmKinds[cs.kind].wgmma.String()
			}
			var hits int
			var why, other string
			on(t, d, func() error {
				defer func() { d.drv, d.tc.ext = inner, inner }()
				lie := f.lie(func(name string) bool { return name == kernel }, &hits)
				d.drv, d.tc.ext = lie, lie
				g, err := d.newGEMMChecker()
				if err != nil {
					return err
				}
				defer g.close()
				d.tc.wgmma = wgmma
				if why, _, err = g.check(cs); err != nil {
					return err
				}
				d.tc.wgmma = !wgmma && hasWgmma
				if hasWgmma {
					other, _, err = g.check(cs)
				}
				return err
			})
			on(t, d, func() error { d.tc.wgmma = hasWgmma; return nil })
			if hits == 0 || !strings.HasPrefix(why, cs.String()+": ") || other != "" {
				t.Errorf("%s with %s %s (%d launches changed): the check says %q; on the other path %q", cs, kernel, f.name, hits, why, other)
			}
			if f.name == "M tall" && !strings.Contains(why, "C (f32) written") {
				t.Errorf("%s with %s %s: the check says %q, not an overrun", cs, kernel, f.name, why)
			}
		}
	}
}

// lostContext fails every launch with a kernel's fault, and every Sync
// after one, as a context a faulting kernel took with it does.
type lostContext struct {
	fullDriver
	lost *bool
}

var errIllegalInstruction = errors.New("an illegal instruction was encountered")

func (l lostContext) Launch(k, gx, gy, block int, args []uint64) error {
	*l.lost = true
	return errIllegalInstruction
}

func (l lostContext) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	*l.lost = true
	return errIllegalInstruction
}

func (lostContext) IsKernelFault(err error) bool { return errors.Is(err, errIllegalInstruction) }

func (l lostContext) Sync() error {
	if *l.lost {
		return errIllegalInstruction
	}
	return l.fullDriver.Sync()
}

// failingCopies fails every copy to the host, and nothing else: an error
// of the device's memory traffic, not of a kernel, and not a lost context.
type failingCopies struct{ fullDriver }

func (failingCopies) ToHost(unsafe.Pointer, uintptr, int64) error {
	return errors.New("a copy that failed")
}

// TestCheckBF16GEMMsDeviceErrors: a kernel that takes the context with it
// fails the check with an error naming the way around it (the portable
// kernels for a wgmma kernel, fp32 for an mma.sync one); a copy that fails
// is an error too; neither leaves a verdict, but a wgmma kernel's lost
// context makes the next check, on a new context, fall back at once.
func TestCheckBF16GEMMsDeviceErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		noWgmma bool
		lie     func(fullDriver) fullDriver
		want    string
	}{
		{"lost context, wgmma", false, func(f fullDriver) fullDriver { return lostContext{f, new(bool)} },
			"(wgmma) failed on this GPU and took the CUDA context with it"},
		{"lost context, mma.sync", true, func(f fullDriver) fullDriver { return lostContext{f, new(bool)} },
			"(mma.sync) failed on this GPU and took the CUDA context with it"},
		{"failing copies", true, func(f fullDriver) fullDriver { return failingCopies{f} },
			"checking the bf16 GEMM gemm_bf16_nt_f32 (mma.sync): "},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, wgmma := openDevice(t)
			if !wgmma && !c.noWgmma {
				t.Skipf("%s runs no wgmma kernels", d)
			}
			freshVerdict(t)
			var inner fullDriver
			on(t, d, func() error { inner = d.drv.(fullDriver); return nil })
			err := d.do(func() error {
				l := c.lie(inner)
				d.drv, d.tc.ext = l, l
				if c.noWgmma {
					d.tc.wgmma = false
				}
				return d.checkBF16GEMMs()
			})
			on(t, d, func() error { d.drv, d.tc.ext = inner, inner; return nil })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("the check says %v, want %q", err, c.want)
			}
			gemmVerdict.Lock()
			done := gemmVerdict.done
			gemmVerdict.Unlock()
			if done {
				t.Error("the device's error left a verdict")
			}
			if c.name != "lost context, wgmma" {
				return
			}
			// The next check, on a new context, does not run the wgmma
			// kernels again: it falls back to the mma.sync ones.
			d2, _ := openDevice(t)
			on(t, d2, d2.checkBF16GEMMs)
			var after bool
			var fallback string
			on(t, d2, func() error { after, fallback = d2.tc.wgmma, d2.tc.fallback; return nil })
			if after || fallback != "gemm_bf16_nt_f32 took an earlier CUDA context of this process with it" {
				t.Errorf("the next check: wgmma %v, fallback %q", after, fallback)
			}
		})
	}
}

// TestCheckProblemDisagree: the comparison fails on what it is for (a
// missing bias, a value off by a product, a NaN left unwritten, an act of
// the wrong column, a statistic of the wrong count or mean) and passes on
// exact and on bf16-rounded right outputs, on host data.
func TestCheckProblemDisagree(t *testing.T) {
	pr := newCheckProblem()
	const mn = checkM * checkN
	// right is the outputs of a right kernel of cs: C as float32 (bf16 for
	// the bf16 outputs), act and the statistics of it.
	right := func(cs checkCase) checkOutput {
		g := gemmKinds[cs.kind]
		c, second := make([]float64, mn), []float64(nil)
		for k := range c {
			v := pr.ab[k]
			if g.bias {
				v += float64(pr.bias[k%checkN])
			}
			if cs.kind == nnF32Add {
				v += float64(pr.old[k])
			}
			if cs.kind == ntGELUBF16 {
				v, _ = geluBF16Bound(v, 0)
			}
			f := float32(v)
			if cs.kind == ntGELUBF16 || cs.kind == ntBF16Stats {
				f = leconv.BFloat16Value(leconv.BFloat16Bits(f))
			}
			c[k] = float64(f)
		}
		switch g.second {
		case secondAct:
			second = make([]float64, mn)
			for k, v := range c {
				if cs.kind == ntF32GELU {
					v, _ = geluBF16Bound(v, 0)
				}
				second[k] = float64(leconv.BFloat16Value(leconv.BFloat16Bits(float32(v))))
			}
		case secondStats:
			tiles := statsTiles(checkN)
			second = make([]float64, checkM*tiles*3)
			for i := range checkM {
				for tl := range tiles {
					vals := c[i*checkN+tl*statsTile : i*checkN+min(checkN, (tl+1)*statsTile)]
					var mean, m2 float64
					for _, v := range vals {
						mean += v
					}
					mean /= float64(len(vals))
					for _, v := range vals {
						m2 += (v - mean) * (v - mean)
					}
					copy(second[(i*tiles+tl)*3:], []float64{float64(len(vals)), mean, m2})
				}
			}
		}
		return checkOutput{c: c, second: second}
	}
	for _, cs := range checkCases {
		if why := pr.disagree(cs, right(cs)); why != "" {
			t.Errorf("%s: right outputs: %s", cs, why)
		}
	}
	broken := func(cs checkCase, edit func(o checkOutput)) checkOutput {
		o := right(cs)
		edit(o)
		return o
	}
	for _, c := range []struct {
		name string
		cs   checkCase
		out  checkOutput
	}{
		{"no bias", checkCase{ntF32, 1, 1}, broken(checkCase{ntF32, 1, 1}, func(o checkOutput) {
			copy(o.c, right(checkCase{nnF32, 1, 1}).c)
		})},
		{"a product short", checkCase{tnF32, 2, 1}, broken(checkCase{tnF32, 2, 1}, func(o checkOutput) {
			// C's last element without its largest product.
			var big float64
			for p := range checkK {
				t := float64(leconv.BFloat16Value(pr.a[(checkM-1)*checkK+p])) * float64(leconv.BFloat16Value(pr.b[p*checkN+checkN-1]))
				if math.Abs(t) > math.Abs(big) {
					big = t
				}
			}
			o.c[mn-1] -= big
		})},
		{"a NaN left", checkCase{nnF32Add, 1, 1}, broken(checkCase{nnF32Add, 1, 1}, func(o checkOutput) { o.c[77] = math.NaN() })},
		{"act of the wrong column", checkCase{ntF32GELU, 1, 1}, broken(checkCase{ntF32GELU, 1, 1}, func(o checkOutput) {
			o.second[5], o.second[6] = o.second[6], o.second[5]
		})},
		{"statistics' count", checkCase{ntF32Stats, 1, 1}, broken(checkCase{ntF32Stats, 1, 1}, func(o checkOutput) { o.second[3] = 63 })},
		{"statistics' mean", checkCase{ntBF16Stats, 1, 1}, broken(checkCase{ntBF16Stats, 1, 1}, func(o checkOutput) { o.second[1] += 0.01 })},
		{"an overrun", checkCase{ntF32, 1, 1}, func() checkOutput { o := right(checkCase{ntF32, 1, 1}); o.overrun = "C written past its end"; return o }()},
	} {
		if why := pr.disagree(c.cs, c.out); why == "" {
			t.Errorf("%s: the check found nothing", c.name)
		}
	}
}

// checkBufBytes is the size of the check's device buffers.
func checkBufBytes() int {
	var a arena
	carveCheckBufs(&a)
	return int(a.off)
}
