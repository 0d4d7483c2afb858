//go:build cuda && cudaemu

package driver

// Tests that the emulator catches the mistakes a GPU would hide or turn
// into a race: a missing wait on asynchronous copies reads the poison
// (NaN) fill, a barrier that part of the block skips fails the launch.
// These behaviours are the emulator's own (on a GPU the same kernels race
// or hang), so they run only under the tag cudaemu.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/dinoclip/dinoclip/cuda/emu"
	"github.com/dinoclip/dinoclip/kernels"
)

// A DINOCLIP_EMU_SEED that is no number is refused as the emulated
// device opens, not at its first launch, where the refusal read as the
// kernel's fault (and the engine check refused the kernels for it). The
// emulator reads it once a process, so a process of its own takes it.
func TestEmuBadScheduleSeed(t *testing.T) {
	const child = "DINOCLIP_TEST_EMU_SEED_CHILD"
	if os.Getenv(child) != "" {
		_, err := Open([]string{"tc_check_divergent"})
		fmt.Printf("open: %v\n", err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEmuBadScheduleSeed$")
	cmd.Env = append(os.Environ(), child+"=1", "DINOCLIP_EMU_SEED=12x")
	out, err := cmd.CombinedOutput()
	if want := "open: emulation: DINOCLIP_EMU_SEED=12x: not an unsigned decimal integer"; err != nil || !strings.Contains(string(out), want) {
		t.Errorf("open with DINOCLIP_EMU_SEED=12x: %v\n%s\nwant %q", err, out, want)
	}
}

// A kernel that fails as it runs is a kernel fault (IsKernelFault), as a
// GPU would report it; running out of memory is not.
func TestEmuDivergentBarrier(t *testing.T) {
	v := openTC(t)
	out := v.alloc(4 * 128)
	err := v.launch("tc_check_divergent", cfg1(1, 128, 0), pPtr(out))
	if err == nil || !strings.Contains(err.Error(), "divergent barrier") || !v.d.IsKernelFault(err) {
		t.Fatalf("half the block skipping __syncthreads: error %v, want a divergent barrier, a kernel fault", err)
	}
	if _, err := v.d.Alloc(1 << 62); err == nil || v.d.IsKernelFault(err) {
		t.Fatalf("an allocation too large: error %v, want one that is no kernel fault", err)
	}
}

// TestEmuScheduleDrift: a barrier missing between two warps that meet only
// in warp collectives, as the one between search.cu's last reads of its
// ring and its writes of the score tile over it. In a lockstep schedule
// (seed 0) every warp completes one collective a round, in step with the
// other, and the mistake never shows; the default schedule holds warps
// back at random and must show it. With the barrier every schedule gives
// the right sums.
func TestEmuScheduleDrift(t *testing.T) {
	v := openTC(t)
	const blocks, steps = 64, 8
	wrong := func(seed uint64, sync int) int {
		old := emu.SetScheduleSeed(seed)
		defer emu.SetScheduleSeed(old)
		out := v.alloc(4 * 64 * blocks)
		v.mustLaunch("tc_check_drift", cfg1(blocks, 64, 256), pPtr(out), pInt(steps), pInt(sync))
		got := v.download(out, 4*64*blocks)
		n := 0
		for i := 0; i < 64*blocks; i++ {
			// Thread i%64 receives thread (i%64)^1's read of the other
			// warp's value.
			th := i % 64
			want := steps * (((th ^ 1) + 32) % 64)
			if int(int32(binary.LittleEndian.Uint32(got[4*i:]))) != want {
				n++
			}
		}
		return n
	}
	def := emu.SetScheduleSeed(0)
	emu.SetScheduleSeed(def)
	if def == 0 { // DINOCLIP_EMU_SEED=0: random schedules from seed 1 on
		def = 1
	}
	for _, seed := range []uint64{0, def, def + 1, def + 2} {
		if n := wrong(seed, 1); n != 0 {
			t.Errorf("seed %d, with the barrier: %d of %d threads got a wrong sum", seed, n, 64*blocks)
		}
	}
	if n := wrong(0, 0); n != 0 {
		t.Errorf("lockstep schedule without the barrier: %d threads got a wrong sum; the test no longer shows what a lockstep schedule misses", n)
	}
	if n := wrong(def, 0); n == 0 {
		t.Errorf("default schedule (seed %d) without the barrier: every sum right in %d blocks; warps never drifted apart", def, blocks)
	}
}

// TestParamSizesAgree: the signature table the GPU driver checks launches
// against (kernels.ParamSizes, generated into package kernels) and the
// emulator's own (its entry points, generated into cuda/emu) agree for
// every kernel.
func TestParamSizesAgree(t *testing.T) {
	n := 0
	for _, m := range kernels.Modules {
		for _, name := range m.Kernels {
			want, ok := kernels.ParamSizes(name)
			got, err := emu.ParamSizes(name)
			if !ok || err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: kernels.ParamSizes %v (%v), the emulator's %v (%v)", name, want, ok, got, err)
			}
			n++
		}
	}
	if n < 50 {
		t.Errorf("compared %d kernels; the table should hold every kernel", n)
	}
}

// TestEmuMbarrierEarlyRelease: a consumer that gives a ring's stage back
// (arrives on its empty mbarrier) before reading it lets the producer
// refill it first. The emulator lets the warps waiting on a phase run as
// soon as the arrival completing it lands, as a GPU may, so the mistake
// shows even in lockstep (seed 0): the consumer lane whose arrival
// completes the phase reads the next round's value. Released after the
// read, every schedule gives the right sums.
func TestEmuMbarrierEarlyRelease(t *testing.T) {
	v := openTC(t)
	const blocks, rounds = 16, 6
	wrong := func(seed uint64, early int) int {
		old := emu.SetScheduleSeed(seed)
		defer emu.SetScheduleSeed(old)
		out := v.alloc(4 * 32 * blocks)
		v.mustLaunch("tc_check_ring", cfg1(blocks, 64, 16+4*32), pPtr(out), pInt(rounds), pInt(early))
		got := v.download(out, 4*32*blocks)
		n := 0
		for i := range 32 * blocks {
			want := 100*rounds*(rounds-1)/2 + rounds*(i%32)
			if int(int32(binary.LittleEndian.Uint32(got[4*i:]))) != want {
				n++
			}
		}
		return n
	}
	for _, seed := range []uint64{0, 1, 2} {
		if n := wrong(seed, 0); n != 0 {
			t.Errorf("seed %d, stage released after the read: %d of %d lanes got a wrong sum", seed, n, 32*blocks)
		}
	}
	if n := wrong(0, 1); n == 0 {
		t.Errorf("lockstep schedule, stage released before the read: every sum right in %d blocks; the phase's completion did not let the producer run", blocks)
	}
}

// TestEmuCpAsyncMissingWait: shared memory read before cp.async.wait_group
// holds the poison fill, not the data.
func TestEmuCpAsyncMissingWait(t *testing.T) {
	v := openTC(t)
	src := make([]byte, 1024)
	for i := range src {
		src[i] = byte(i)
	}
	out := v.alloc(1024)
	v.mustLaunch("tc_check_cp_async", cfg1(1, 64, 1024), pPtr(v.upload(src)), pPtr(out), pInt(16), pInt(16), pInt(0))
	for i, b := range v.download(out, 1024) {
		if b != 0xff {
			t.Fatalf("byte %d read before the wait is %#x, want the poison 0xff", i, b)
		}
	}
}

// TestEmuTmaMissingWait: a TMA destination read before waiting on its
// mbarrier reads NaN. In a lockstep schedule: the load lands when a thread
// first finds its wait satisfied, and under a random one a warp held back
// may read after another warp's wait, which a GPU allows too.
func TestEmuTmaMissingWait(t *testing.T) {
	v := openTC(t)
	defer emu.SetScheduleSeed(emu.SetScheduleSeed(0))
	const rows, cols, bw, bh = 16, 64, 64, 8
	in := v.upload(u16s(tmaTensor(rows, cols)))
	spec := TensorMapSpec{DataType: TensorBFloat16, Base: in, Dims: []uint64{cols, rows}, Strides: []uint64{cols * 2},
		Box: []uint32{bw, bh}, Swizzle: Swizzle128B}
	m, err := v.x.EncodeTensorMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.Base = v.alloc(rows * cols * 2)
	ms, err := v.x.EncodeTensorMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	const boxBytes = bw * bh * 2
	out := v.alloc(boxBytes)
	v.mustLaunch("tc_check_tma", cfg1(1, 128, boxBytes+8+1024), pMap(m), pMap(ms), pPtr(out), pInt(boxBytes),
		pInt(0), pInt(0), pInt(0), pInt(0), pInt(1))
	got := v.download(out, boxBytes)
	for i := 0; i < boxBytes; i += 2 {
		if h := binary.LittleEndian.Uint16(got[i:]); h != 0xffff {
			t.Fatalf("bf16 %d read before the mbarrier wait is %#x, want NaN 0xffff", i/2, h)
		}
	}
}

// TestEmuWgmmaMissingWait: accumulators read before wgmma.wait_group still
// hold their old values (the product lands at the wait), and a kernel that
// never waits fails its launch.
func TestEmuWgmmaMissingWait(t *testing.T) {
	v := openTC(t)
	const n = 64
	a, bt, _, _ := wgmmaInputs(n)
	out := v.alloc(4 * 128 * n / 2)
	err := v.launch("tc_check_wgmma", wgmmaConfig(n), pPtr(v.upload(u16s(a))), pPtr(v.upload(u16s(bt))), pPtr(out),
		pInt(n), pInt(1), pInt(1), pInt(0), pInt(0))
	if err == nil || !strings.Contains(err.Error(), "never waited") {
		t.Fatalf("a wgmma never waited on: error %v, want one saying so", err)
	}
	for i, f := range toF32(v.download(out, 4*128*n/2)) {
		if f != 0 {
			t.Fatalf("accumulator %d read before the wait is %v, want its initial 0", i, f)
		}
	}
}

// TestEmuDeadlock: an mbarrier told to expect more bytes than the TMA
// brings never completes its phase; with every thread waiting on it the
// launch must fail as a deadlock, not hang.
func TestEmuDeadlock(t *testing.T) {
	v := openTC(t)
	const rows, cols, bw, bh = 16, 64, 64, 8
	spec := TensorMapSpec{DataType: TensorBFloat16, Base: v.upload(u16s(tmaTensor(rows, cols))), Dims: []uint64{cols, rows},
		Strides: []uint64{cols * 2}, Box: []uint32{bw, bh}, Swizzle: Swizzle128B}
	m, err := v.x.EncodeTensorMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	const expect = bw*bh*2 + 16 // 16 bytes more than the box
	out := v.alloc(expect)
	err = v.launch("tc_check_tma", cfg1(1, 128, expect+8+1024), pMap(m), pMap(m), pPtr(out), pInt(expect),
		pInt(0), pInt(0), pInt(0), pInt(0), pInt(0))
	if err == nil || !strings.Contains(err.Error(), "deadlock") {
		t.Fatalf("an mbarrier phase that never completes: error %v, want a deadlock", err)
	}
}

// TestEmuTensorMapChecks: specs cuTensorMapEncodeTiled would refuse.
func TestEmuTensorMapChecks(t *testing.T) {
	v := openTC(t)
	base := v.alloc(4096)
	good := TensorMapSpec{DataType: TensorBFloat16, Base: base, Dims: []uint64{64, 16}, Strides: []uint64{128},
		Box: []uint32{64, 8}, Swizzle: Swizzle128B}
	if _, err := v.x.EncodeTensorMap(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*TensorMapSpec){
		"unaligned base":     func(s *TensorMapSpec) { s.Base++ },
		"stride not x16":     func(s *TensorMapSpec) { s.Strides[0] = 100 },
		"box over 256":       func(s *TensorMapSpec) { s.Box[1] = 300 },
		"box wider than 128": func(s *TensorMapSpec) { s.Box[0] = 128 },
		"rank 0":             func(s *TensorMapSpec) { s.Dims, s.Box, s.Strides = nil, nil, nil },
		"strides missing":    func(s *TensorMapSpec) { s.Strides = nil },
		"unknown type":       func(s *TensorMapSpec) { s.DataType = 42 },
		"unknown swizzle":    func(s *TensorMapSpec) { s.Swizzle = 9 },
		"zero dimension":     func(s *TensorMapSpec) { s.Dims[1] = 0 },
	} {
		s := good
		s.Dims = append([]uint64(nil), good.Dims...)
		s.Strides = append([]uint64(nil), good.Strides...)
		s.Box = append([]uint32(nil), good.Box...)
		mod(&s)
		if _, err := v.x.EncodeTensorMap(s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestEmuGraph: work captured into a graph does not run until the graph
// is launched, and then runs again at every launch, with UpdateGraph
// swapping in a graph of the same shape.
func TestEmuGraph(t *testing.T) {
	v := openTC(t)
	buf := v.alloc(16)
	if err := v.d.Zero(buf, 16); err != nil {
		t.Fatal(err)
	}
	one, two := v.alloc(16), v.alloc(16)
	for b, src := range map[uintptr][]byte{
		one: {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
		two: {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2},
	} {
		if err := v.d.ToDevice(b, unsafe.Pointer(&src[0]), 16); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := v.d.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	capture := func(src uintptr) Graph {
		if err := v.x.BeginCapture(); err != nil {
			t.Fatal(err)
		}
		if err := v.d.CopyDevice(buf, src, 16); err != nil {
			t.Fatal(err)
		}
		// What waits for the stream, or reads or writes host memory when
		// called, cannot be in a graph replayed later.
		host := make([]byte, 16)
		for call, err := range map[string]error{
			"Sync":      v.d.Sync(),
			"WaitEvent": v.d.WaitEvent(ev),
			"ToDevice":  v.d.ToDevice(buf, unsafe.Pointer(&host[0]), 16),
			"ToHost":    v.d.ToHost(unsafe.Pointer(&host[0]), buf, 16),
			"Free":      v.d.Free(src),
			"Alloc":     func() error { _, err := v.d.Alloc(16); return err }(),
		} {
			if err == nil {
				t.Errorf("%s during a capture: no error", call)
			}
		}
		g, err := v.x.EndCapture()
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g1 := capture(one)
	if got := v.download(buf, 16); got[0] != 0 {
		t.Fatalf("captured work ran during the capture: %v", got)
	}
	exec, err := v.x.Instantiate(g1)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.x.LaunchGraph(exec); err != nil {
		t.Fatal(err)
	}
	if got := v.download(buf, 16); got[0] != 1 {
		t.Fatalf("after the graph ran: %v", got)
	}
	if err := v.x.UpdateGraph(exec, capture(two)); err != nil {
		t.Fatal(err)
	}
	if err := v.x.LaunchGraph(exec); err != nil {
		t.Fatal(err)
	}
	if got := v.download(buf, 16); got[15] != 2 {
		t.Fatalf("after the updated graph ran: %v", got)
	}
	if err := v.x.BeginCapture(); err != nil {
		t.Fatal(err)
	}
	if err := v.d.Zero(buf, 16); err != nil {
		t.Fatal(err)
	}
	if err := v.d.Zero(buf, 16); err != nil {
		t.Fatal(err)
	}
	g3, err := v.x.EndCapture()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.x.UpdateGraph(exec, g3); err == nil {
		t.Error("updating a graph with one of another shape: no error")
	}
}

// TestEmuStaticSharedCounts: as on a GPU, a kernel's static shared memory
// (budgets.tsv) counts against the 48 KiB a launch may use without opting
// in and against the 227 KiB opt-in maximum: grad_rows (1 KiB static, its
// reduction scratch and the dynamic part's alignment) is refused 48 KiB -
// 1 KiB + 1 byte of dynamic shared memory until its limit is raised, and
// its limit cannot be raised to 227 KiB.
func TestEmuStaticSharedCounts(t *testing.T) {
	v := openKernels(t, []string{"grad_rows"})
	static, ok := kernels.StaticShared("grad_rows")
	if !ok || static <= 0 {
		t.Fatalf("grad_rows: static shared memory %d (in budgets.tsv: %v), want some", static, ok)
	}
	over := cfg1(1, 256, defaultDynamicShared-static+1)
	err := v.x.LaunchEx(v.kernel("grad_rows"), over, nil)
	if err == nil || !strings.Contains(err.Error(), "beside") {
		t.Errorf("%d bytes of dynamic shared memory beside %d static, not raised: error %v", over.SharedBytes, static, err)
	}
	if err := v.x.SetMaxDynamicShared(v.kernel("grad_rows"), SM90.MaxDynamicShared); err == nil {
		t.Errorf("raised to %d bytes beside %d static: no error", SM90.MaxDynamicShared, static)
	}
	if err := v.x.SetMaxDynamicShared(v.kernel("grad_rows"), SM90.MaxDynamicShared-static); err != nil {
		t.Errorf("raised to the most that fits beside the static part: %v", err)
	}
}

// TestEmuGraphEvent: an event recorded in a captured graph is passed when
// the stream reaches it in a launch of the graph: in the lazy stream,
// WaitEvent on it runs the graph up to the event and no further.
func TestEmuGraphEvent(t *testing.T) {
	v := openTC(t)
	buf, src := v.alloc(16), v.alloc(16)
	ones := bytes.Repeat([]byte{1}, 16)
	if err := v.d.ToDevice(src, unsafe.Pointer(&ones[0]), 16); err != nil {
		t.Fatal(err)
	}
	if err := v.d.Zero(buf, 16); err != nil {
		t.Fatal(err)
	}
	host, err := v.x.HostAlloc(32)
	if err != nil {
		t.Fatal(err)
	}
	defer v.x.HostFree(host)
	mid, err := v.d.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.x.BeginCapture(); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { return v.d.CopyDevice(buf, src, 16) },
		func() error { return v.d.Record(mid) },
		func() error { return v.x.ToHostAsync(host[:16], buf) },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	g, err := v.x.EndCapture()
	if err != nil {
		t.Fatal(err)
	}
	exec, err := v.x.Instantiate(g)
	if err != nil {
		t.Fatal(err)
	}
	// An upload of 7s makes the stream lazy: the graph's launch is queued
	// behind it.
	clear(host[:16])
	copy(host[16:], bytes.Repeat([]byte{7}, 16))
	if err := v.x.UploadAsync(src, host[16:], nil); err != nil {
		t.Fatal(err)
	}
	if err := v.x.LaunchGraph(exec); err != nil {
		t.Fatal(err)
	}
	if err := v.d.WaitEvent(mid); err != nil {
		t.Fatal(err)
	}
	if _, err := v.d.Elapsed(mid, mid); err != nil {
		t.Errorf("the event recorded in the graph, waited for: %v", err)
	}
	if host[0] != 0 {
		t.Errorf("WaitEvent on the graph's event ran the copy to the host behind it: host holds %v", host[:16])
	}
	if err := v.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(host[:16], bytes.Repeat([]byte{7}, 16)) {
		t.Errorf("after Sync: host %v, want the 7s uploaded and copied through the graph", host[:16])
	}
}

// TestEmuUploadAsyncReadsLate: after an UploadAsync the emulated stream
// runs as late as a GPU may, so a host that writes the pinned source
// before WaitEvent(done) has returned sends the device the new contents,
// work queued behind the copy runs in order when the host waits, and
// WaitEvent runs the queue only up to its event. ToDevice refuses pinned
// memory, and UploadAsync and ToHostAsync pageable memory.
func TestEmuUploadAsyncReadsLate(t *testing.T) {
	v := openTC(t)
	a, b := v.alloc(16), v.alloc(16)
	host, err := v.x.HostAlloc(16)
	if err != nil {
		t.Fatal(err)
	}
	done, err := v.d.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	fill := func(x byte) {
		for i := range host {
			host[i] = x
		}
	}

	// Waited for: the device gets what the host held at the call.
	fill(1)
	if err := v.x.UploadAsync(a, host, done); err != nil {
		t.Fatal(err)
	}
	if err := v.d.WaitEvent(done); err != nil {
		t.Fatal(err)
	}
	fill(2)
	if got := v.download(a, 16); got[0] != 1 || got[15] != 1 {
		t.Fatalf("an upload waited for before the host wrote again: %v, want 1s", got)
	}

	// Not waited for: the copy reads the source when the host next waits
	// for the stream, after it wrote 3; the copy from a to b queued behind
	// it has not run either, and runs after it.
	if err := v.x.UploadAsync(a, host, done); err != nil {
		t.Fatal(err)
	}
	if err := v.d.CopyDevice(b, a, 16); err != nil {
		t.Fatal(err)
	}
	fill(3)
	if err := v.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := v.download(b, 16); got[0] != 3 || got[15] != 3 {
		t.Fatalf("an upload not waited for, the host writing 3 after it: the work behind it copied %v, want 3s", got)
	}

	// WaitEvent runs the queue up to the event and no further: the second
	// upload, behind it, reads its source at the Sync after.
	other, err := v.x.HostAlloc(16)
	if err != nil {
		t.Fatal(err)
	}
	defer v.x.HostFree(other)
	fill(4)
	copy(other, host)
	if err := v.x.UploadAsync(a, host, done); err != nil {
		t.Fatal(err)
	}
	if err := v.x.UploadAsync(b, other, nil); err != nil {
		t.Fatal(err)
	}
	if err := v.d.WaitEvent(done); err != nil {
		t.Fatal(err)
	}
	fill(5)
	other[0] = 6
	if err := v.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := v.download(a, 16); got[0] != 4 {
		t.Errorf("the upload waited for: %v, want 4s", got)
	}
	if got := v.download(b, 16); got[0] != 6 || got[1] != 4 {
		t.Errorf("the upload behind the waited event: %v, want 6 then 4s", got)
	}

	// In the lazy stream a launch with the wrong parameters still fails at
	// its call, as CUDA's launch does, and Elapsed refuses an event whose
	// Record is still queued (CUDA: not ready).
	start, err := v.d.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.d.Record(start); err != nil {
		t.Fatal(err)
	}
	if err := v.x.UploadAsync(a, host, nil); err != nil {
		t.Fatal(err)
	}
	if err := v.d.Record(done); err != nil {
		t.Fatal(err)
	}
	if err := v.d.Launch(v.kernel("tc_check_divergent"), 1, 1, 128, []uint64{uint64(a), 1}); err == nil {
		t.Error("a lazy launch with 2 arguments for 1 parameter: no error at the call")
	}
	if _, err := v.d.Elapsed(start, done); err == nil {
		t.Error("Elapsed before the stream passed the end event: no error")
	}
	if err := v.d.WaitEvent(done); err != nil {
		t.Fatal(err)
	}
	if _, err := v.d.Elapsed(start, done); err != nil {
		t.Errorf("Elapsed once the stream passed both events: %v", err)
	}

	page := make([]byte, 16)
	if err := v.d.ToDevice(a, unsafe.Pointer(&host[0]), 16); err == nil || !strings.Contains(err.Error(), "UploadAsync") {
		t.Errorf("ToDevice from pinned memory: %v, want a refusal naming UploadAsync", err)
	}
	if err := v.x.UploadAsync(a, page, nil); err == nil {
		t.Error("UploadAsync from pageable memory: no error")
	}
	if err := v.x.ToHostAsync(page, a); err == nil {
		t.Error("ToHostAsync into pageable memory: no error")
	}
	if err := v.x.HostFree(host[4:]); err == nil {
		t.Error("HostFree of part of an allocation: no error")
	}
	if err := v.x.HostFree(host); err != nil {
		t.Fatal(err)
	}
	if err := v.x.HostFree(host); err == nil {
		t.Error("a second HostFree: no error")
	}
}

// TestEmuDriverRules: calls a GPU refuses, the emulator refuses too. A
// call from another OS thread than Open's (the context is current on that
// one only: a test goroutine the scheduler moves between threads fails on
// a GPU) and a Zero of a byte count that is no multiple of 4 (the cu
// driver clears 32-bit words).
func TestEmuDriverRules(t *testing.T) {
	v := openTC(t) // on this test's locked thread
	buf := v.alloc(16)
	if err := v.d.Zero(buf, 6); err == nil || !strings.Contains(err.Error(), "want a multiple of 4") {
		t.Errorf("Zero of 6 bytes: error %v, want a multiple of 4", err)
	}
	if err := v.d.Zero(buf, 8); err != nil {
		t.Errorf("Zero of 8 bytes: %v", err)
	}
	errs := make(chan map[string]error)
	go func() {
		// Locked, this goroutine's thread cannot be the test's, which is
		// locked to the test goroutine.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_, allocErr := v.d.Alloc(16)
		_, eventErr := v.d.NewEvent()
		_, _, memErr := v.d.MemInfo()
		errs <- map[string]error{"Sync": v.d.Sync(), "Alloc": allocErr, "NewEvent": eventErr, "MemInfo": memErr,
			"Free": v.d.Free(buf), "Zero": v.d.Zero(buf, 8)}
	}()
	for call, err := range <-errs {
		if err == nil || !strings.Contains(err.Error(), "which opened the driver") {
			t.Errorf("%s from another OS thread: error %v, want a refusal", call, err)
		}
	}
	if err := v.d.Zero(buf, 8); err != nil { // (not freed by the refused Free)
		t.Errorf("Zero after a refused Free: %v", err)
	}
	if err := v.d.Sync(); err != nil {
		t.Errorf("Sync from the thread that opened the driver: %v", err)
	}
}
