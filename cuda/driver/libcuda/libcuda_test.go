//go:build cuda

package libcuda

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// These tests need no GPU: they load a fake libcuda (testdata/fakecuda.c,
// built here with the C compiler cgo uses) that records every argument it
// receives, and check the bytes at the offsets the CUDA driver API
// documents.

// fake builds testdata/fakecuda.c as a shared library (old: without the
// CUDA 11.8 and 12.0 entry points), opens it, and points its call log at a
// fresh file, which the returned function reads back.
func fake(t *testing.T, old bool) (*Lib, func() []call) {
	t.Helper()
	dir := t.TempDir()
	so := filepath.Join(dir, "libfakecuda.so")
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	args := []string{"-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", so, "testdata/fakecuda.c"}
	if old {
		args = append(args, "-DFAKE_OLD_DRIVER")
	}
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("building the fake libcuda: %v\n%s", err, out)
	}
	l, err := Open(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	log := filepath.Join(dir, "calls.log")
	t.Setenv("FAKE_CUDA_LOG", log)
	t.Setenv("FAKE_CUDA_FAIL", "")
	return l, func() []call {
		b, err := os.ReadFile(log)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if err := os.Remove(log); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		var calls []call
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			c := call{name: f[0], args: map[string]string{}}
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				c.args[k] = v
			}
			calls = append(calls, c)
		}
		return calls
	}
}

// call is one line of the fake's log.
type call struct {
	name string
	args map[string]string
}

// only returns the single call the log holds, which must be name.
func only(t *testing.T, calls []call, name string) call {
	t.Helper()
	if len(calls) != 1 || calls[0].name != name {
		t.Fatalf("calls %v, want one %s", calls, name)
	}
	return calls[0]
}

func (c call) hex(t *testing.T, key string) []byte {
	t.Helper()
	b, err := hex.DecodeString(c.args[key])
	if err != nil {
		t.Fatalf("%s %s=%q: %v", c.name, key, c.args[key], err)
	}
	return b
}

func (c call) uint(t *testing.T, key string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(c.args[key], 0, 64)
	if err != nil {
		t.Fatalf("%s %s=%q: %v", c.name, key, c.args[key], err)
	}
	return v
}

func u32(b []byte, at int) uint32 { return binary.LittleEndian.Uint32(b[at:]) }
func u64(b []byte, at int) uint64 { return binary.LittleEndian.Uint64(b[at:]) }

func TestOpenMissingLibrary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "libcuda.so.1")
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "NVIDIA driver installed") {
		t.Fatalf("Open of a missing library: %v, want an error naming %s", err, path)
	}
	// A file that is not a shared library.
	if err := os.WriteFile(path, []byte("not an ELF file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "cannot load") {
		t.Fatalf("Open of a text file: %v, want an error", err)
	}
}

func TestLaunchKernelEx(t *testing.T) {
	l, calls := fake(t, false)
	// A pointer, an int, a 128-byte tensor map and a float: the sizes a
	// tensor-core kernel takes.
	ptr := binary.LittleEndian.AppendUint64(nil, 0x7f00_1234_5678)
	n := binary.LittleEndian.AppendUint32(nil, 4096)
	var tmap [128]byte
	for i := range tmap {
		tmap[i] = byte(200 - i)
	}
	x := binary.LittleEndian.AppendUint32(nil, 0x3f800000)
	t.Setenv("FAKE_CUDA_PARAM_SIZES", "8,4,128,4")
	g := Launch{Grid: [3]uint32{132, 2, 3}, Block: [3]uint32{128, 3, 1}, Cluster: [3]uint32{2, 1, 3},
		SharedBytes: 200 << 10, Stream: 0xabc0}
	if err := l.LaunchKernelEx(0xf00d0, g, [][]byte{ptr, n, tmap[:], x}); err != nil {
		t.Fatal(err)
	}
	c := only(t, calls(), "cuLaunchKernelEx")
	cfg := c.hex(t, "config")
	for i, want := range []uint32{132, 2, 3, 128, 3, 1, 200 << 10} {
		if got := u32(cfg, 4*i); got != want {
			t.Errorf("CUlaunchConfig word %d = %d, want %d", i, got, want)
		}
	}
	if got := u64(cfg, 32); got != 0xabc0 {
		t.Errorf("CUlaunchConfig.hStream = %#x, want 0xabc0", got)
	}
	if got := u32(cfg, 48); got != 1 {
		t.Errorf("CUlaunchConfig.numAttrs = %d, want 1", got)
	}
	attrs := c.hex(t, "attrs")
	if len(attrs) != 72 {
		t.Fatalf("%d bytes of attributes, want one CUlaunchAttribute of 72", len(attrs))
	}
	if id := u32(attrs, 0); id != 4 {
		t.Errorf("attribute id %d, want 4 (CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION)", id)
	}
	if x, y, z := u32(attrs, 8), u32(attrs, 12), u32(attrs, 16); x != 2 || y != 1 || z != 3 {
		t.Errorf("cluster dimension %d,%d,%d, want 2,1,3", x, y, z)
	}
	if c.uint(t, "f") != 0xf00d0 || c.args["extra"] != "(nil)" {
		t.Errorf("function %s, extra %s: want 0xf00d0 and no extra", c.args["f"], c.args["extra"])
	}
	want := strings.Join([]string{hex.EncodeToString(ptr), hex.EncodeToString(n), hex.EncodeToString(tmap[:]), hex.EncodeToString(x)}, ",")
	if c.args["params"] != want {
		t.Errorf("kernel parameters as the driver reads them:\n%s\nwant\n%s", c.args["params"], want)
	}

	// Without a cluster, no attribute; without parameters, no bytes.
	t.Setenv("FAKE_CUDA_PARAM_SIZES", "")
	g.Cluster = [3]uint32{}
	if err := l.LaunchKernelEx(0xf00d0, g, nil); err != nil {
		t.Fatal(err)
	}
	c = only(t, calls(), "cuLaunchKernelEx")
	if n := u32(c.hex(t, "config"), 48); n != 0 {
		t.Errorf("%d attributes for a launch without a cluster", n)
	}

	// The driver's refusal is an error with its name and text.
	t.Setenv("FAKE_CUDA_FAIL", "cuLaunchKernelEx")
	err := l.LaunchKernelEx(0xf00d0, g, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != 1 || !strings.Contains(err.Error(), "cuLaunchKernelEx: CUDA_ERROR_INVALID_VALUE (1): invalid argument") {
		t.Errorf("a refused launch: %v", err)
	}
	calls()
}

func TestLaunchKernelExArguments(t *testing.T) {
	l, calls := fake(t, false)
	good := Launch{Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{32, 1, 1}}
	for _, tc := range []struct {
		name   string
		f      Function
		g      Launch
		params [][]byte
	}{
		{"no function", 0, good, nil},
		{"zero grid", 1, Launch{Grid: [3]uint32{0, 1, 1}, Block: good.Block}, nil},
		{"zero block", 1, Launch{Grid: good.Grid, Block: [3]uint32{32, 0, 1}}, nil},
		{"partial cluster", 1, Launch{Grid: good.Grid, Block: good.Block, Cluster: [3]uint32{2, 0, 1}}, nil},
		{"empty parameter", 1, good, [][]byte{{1, 2, 3, 4}, {}}},
		{"too many parameter bytes", 1, good, [][]byte{make([]byte, MaxParamBytes), {1}}},
	} {
		if err := l.LaunchKernelEx(tc.f, tc.g, tc.params); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if c := calls(); len(c) != 0 {
		t.Errorf("bad launches reached the driver: %v", c)
	}
}

func TestTensorMapEncodeTiled(t *testing.T) {
	l, calls := fake(t, false)
	a := TensorMapTiled{DataType: 9, Base: 0x7f00_0000_0100, Dims: []uint64{4096, 768, 3}, Strides: []uint64{8192, 8192 * 768},
		Box: []uint32{64, 128, 1}, ElemStrides: []uint32{1, 2, 1}, Interleave: 0, Swizzle: 3, L2Promotion: 2, OOBFill: 1}
	m, err := l.TensorMapEncodeTiled(a)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range m {
		if b != byte(i+1) {
			t.Fatalf("tensor map byte %d = %d: the driver's 128 bytes were not copied out", i, b)
		}
	}
	c := only(t, calls(), "cuTensorMapEncodeTiled")
	for k, want := range map[string]uint64{"align128": 1, "dtype": 9, "rank": 3, "base": 0x7f00_0000_0100,
		"interleave": 0, "swizzle": 3, "l2": 2, "oob": 1} {
		if got := c.uint(t, k); got != want {
			t.Errorf("%s = %d, want %d", k, got, want)
		}
	}
	le := func(vs ...any) []byte {
		var b bytes.Buffer
		for _, v := range vs {
			binary.Write(&b, binary.LittleEndian, v)
		}
		return b.Bytes()
	}
	for k, want := range map[string][]byte{
		"dims":        le(a.Dims),
		"strides":     le(a.Strides),
		"box":         le(a.Box),
		"elemstrides": le(a.ElemStrides),
	} {
		if got := c.hex(t, k); !bytes.Equal(got, want) {
			t.Errorf("%s = %x, want %x", k, got, want)
		}
	}

	// Rank 1 has no strides.
	if _, err := l.TensorMapEncodeTiled(TensorMapTiled{DataType: 7, Base: 0x1000, Dims: []uint64{64}, Box: []uint32{32}, ElemStrides: []uint32{1}}); err != nil {
		t.Fatal(err)
	}
	if c := only(t, calls(), "cuTensorMapEncodeTiled"); c.args["strides"] != "" || c.uint(t, "rank") != 1 {
		t.Errorf("rank 1: %v", c.args)
	}

	for _, bad := range []TensorMapTiled{
		{Dims: nil},
		{Dims: make([]uint64, 6), Strides: make([]uint64, 5), Box: make([]uint32, 6), ElemStrides: make([]uint32, 6)},
		{Dims: []uint64{4, 4}, Strides: nil, Box: []uint32{4, 4}, ElemStrides: []uint32{1, 1}},
		{Dims: []uint64{4, 4}, Strides: []uint64{16}, Box: []uint32{4}, ElemStrides: []uint32{1, 1}},
		{Dims: []uint64{4, 4}, Strides: []uint64{16}, Box: []uint32{4, 4}, ElemStrides: []uint32{1}},
	} {
		if _, err := l.TensorMapEncodeTiled(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if c := calls(); len(c) != 0 {
		t.Errorf("ill-formed tensor maps reached the driver: %v", c)
	}
	t.Setenv("FAKE_CUDA_FAIL", "cuTensorMapEncodeTiled")
	if m, err := l.TensorMapEncodeTiled(a); err == nil || m != [128]byte{} {
		t.Errorf("a refused encoding: %v, map %x", err, m)
	}
	calls()
}

func TestFuncAttributes(t *testing.T) {
	l, calls := fake(t, false)
	if err := l.FuncSetAttribute(0xf1, FuncMaxDynamicSharedSize, 227<<10); err != nil {
		t.Fatal(err)
	}
	c := only(t, calls(), "cuFuncSetAttribute")
	if c.uint(t, "f") != 0xf1 || c.uint(t, "attrib") != 8 || c.uint(t, "value") != 227<<10 {
		t.Errorf("cuFuncSetAttribute got %v, want f=0xf1 attrib=8 value=%d", c.args, 227<<10)
	}
	v, err := l.FuncGetAttribute(0xf1, FuncNumRegs)
	if err != nil || v != 407 {
		t.Errorf("FuncGetAttribute(NUM_REGS) = %d, %v; the fake answers 407", v, err)
	}
	if c := only(t, calls(), "cuFuncGetAttribute"); c.uint(t, "attrib") != 4 {
		t.Errorf("cuFuncGetAttribute got %v", c.args)
	}
	if err := l.FuncSetAttribute(0, FuncMaxDynamicSharedSize, 1); err == nil {
		t.Error("no function: no error")
	}
	if err := l.FuncSetAttribute(1, FuncMaxDynamicSharedSize, 1<<40); err == nil {
		t.Error("a value beyond int: no error")
	}
	if c := calls(); len(c) != 0 {
		t.Errorf("bad calls reached the driver: %v", c)
	}
}

func TestHostMemory(t *testing.T) {
	l, calls := fake(t, false)
	b, err := l.MemHostAlloc(10000, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := only(t, calls(), "cuMemHostAlloc")
	if len(b) != 10000 || c.uint(t, "bytes") != 10000 || c.uint(t, "flags") != 1 {
		t.Fatalf("%d bytes; the driver got %v", len(b), c.args)
	}
	p := c.args["p"]
	for i := range b { // pinned memory starts with whatever was there
		b[i] = 0x11
	}
	if err := l.MemcpyDtoHAsync(b[100:200], 0xdead42, 0x5eed); err != nil {
		t.Fatal(err)
	}
	c = only(t, calls(), "cuMemcpyDtoHAsync_v2")
	if c.uint(t, "bytes") != 100 || c.uint(t, "src") != 0xdead42 || c.uint(t, "stream") != 0x5eed ||
		c.uint(t, "dst") != c.uintOf(t, p)+100 {
		t.Errorf("cuMemcpyDtoHAsync got %v (allocation at %s)", c.args, p)
	}
	for i, v := range b {
		want := byte(0x11)
		if i >= 100 && i < 200 {
			want = 0x42
		}
		if v != want {
			t.Fatalf("byte %d = %#x after the fake's copy of 0x42s into bytes 100..199 of 0x11s", i, v)
		}
	}
	if err := l.MemFreeHost(b); err != nil {
		t.Fatal(err)
	}
	if c := only(t, calls(), "cuMemFreeHost"); c.args["p"] != p {
		t.Errorf("freed %s, allocated %s", c.args["p"], p)
	}
	for name, err := range map[string]error{
		"alloc 0":       func() error { _, err := l.MemHostAlloc(0, 0); return err }(),
		"free nothing":  l.MemFreeHost(nil),
		"copy nothing":  l.MemcpyDtoHAsync(nil, 0x1000, 0),
		"copy from nil": l.MemcpyDtoHAsync(make([]byte, 4), 0, 0),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if c := calls(); len(c) != 0 {
		t.Errorf("bad calls reached the driver: %v", c)
	}
	t.Setenv("FAKE_CUDA_FAIL", "cuMemHostAlloc")
	if b, err := l.MemHostAlloc(64, 0); err == nil || b != nil {
		t.Errorf("a refused allocation: %v", err)
	}
	calls()
}

func (c call) uintOf(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("%s: %q: %v", c.name, s, err)
	}
	return v
}

func TestGraphs(t *testing.T) {
	l, calls := fake(t, false)
	const s = Stream(0x5eed)
	if err := l.StreamBeginCapture(s, CaptureThreadLocal); err != nil {
		t.Fatal(err)
	}
	if c := only(t, calls(), "cuStreamBeginCapture_v2"); c.uint(t, "stream") != 0x5eed || c.uint(t, "mode") != 1 {
		t.Errorf("cuStreamBeginCapture got %v", c.args)
	}
	g, err := l.StreamEndCapture(s)
	if err != nil {
		t.Fatal(err)
	}
	if c := only(t, calls(), "cuStreamEndCapture"); c.uint(t, "graph") != uint64(g) {
		t.Errorf("graph %#x, the driver made %s", g, c.args["graph"])
	}
	e, err := l.GraphInstantiate(g, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c := only(t, calls(), "cuGraphInstantiateWithFlags"); c.uint(t, "graph") != uint64(g) || uint64(e) != uint64(g)+0x100 {
		t.Errorf("instantiated %#x from %v", e, c.args)
	}
	if err := l.GraphLaunch(e, s); err != nil {
		t.Fatal(err)
	}
	if c := only(t, calls(), "cuGraphLaunch"); c.uint(t, "exec") != uint64(e) || c.uint(t, "stream") != 0x5eed {
		t.Errorf("cuGraphLaunch got %v", c.args)
	}
	if err := l.GraphExecUpdate(e, g); err != nil {
		t.Fatal(err)
	}
	only(t, calls(), "cuGraphExecUpdate_v2")
	t.Setenv("FAKE_CUDA_FAIL", "cuGraphExecUpdate_v2")
	err = l.GraphExecUpdate(e, g)
	if err == nil || !strings.Contains(err.Error(), "topology changed") || !strings.Contains(err.Error(), "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE") {
		t.Errorf("a refused update: %v, want the driver's error and the reason", err)
	}
	calls()
	t.Setenv("FAKE_CUDA_FAIL", "")
	if err := l.GraphExecDestroy(e); err != nil {
		t.Fatal(err)
	}
	if err := l.GraphDestroy(g); err != nil {
		t.Fatal(err)
	}
	got := calls()
	if len(got) != 2 || got[0].uint(t, "exec") != uint64(e) || got[1].uint(t, "graph") != uint64(g) {
		t.Errorf("destroy calls %v", got)
	}
	for name, err := range map[string]error{
		"capture the legacy stream": l.StreamBeginCapture(0, CaptureGlobal),
		"capture mode 7":            l.StreamBeginCapture(s, 7),
		"end no stream":             func() error { _, err := l.StreamEndCapture(0); return err }(),
		"instantiate nothing":       func() error { _, err := l.GraphInstantiate(0, 0); return err }(),
		"update nothing":            l.GraphExecUpdate(0, g),
		"launch nothing":            l.GraphLaunch(0, s),
		"destroy nothing":           l.GraphDestroy(0),
		"destroy no exec":           l.GraphExecDestroy(0),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if c := calls(); len(c) != 0 {
		t.Errorf("bad calls reached the driver: %v", c)
	}
}

// A driver without the newer entry points fails those calls alone, with
// the CUDA version they need; a closed library fails every call.
func TestOldDriverAndClose(t *testing.T) {
	l, calls := fake(t, true)
	err := l.LaunchKernelEx(1, Launch{Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{1, 1, 1}}, nil)
	if err == nil || !strings.Contains(err.Error(), "cuLaunchKernelEx is not in") || !strings.Contains(err.Error(), "older than CUDA 11.8") {
		t.Errorf("launch on an old driver: %v", err)
	}
	if _, err := l.TensorMapEncodeTiled(TensorMapTiled{}); err == nil || !strings.Contains(err.Error(), "CUDA 12.0") {
		t.Errorf("tensor map on an old driver: %v", err)
	}
	if err := l.GraphExecUpdate(1, 1); err == nil || !strings.Contains(err.Error(), "cuGraphExecUpdate_v2") {
		t.Errorf("graph update on an old driver: %v", err)
	}
	b, err := l.MemHostAlloc(64, 0)
	if err != nil {
		t.Fatalf("pinned memory on an old driver: %v", err)
	}
	if err := l.MemFreeHost(b); err != nil {
		t.Fatal(err)
	}
	if c := calls(); len(c) != 2 {
		t.Errorf("calls %v, want the allocation and the free", c)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.GraphLaunch(1, 1); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("a call after Close: %v", err)
	}
	if c := calls(); len(c) != 0 {
		t.Errorf("a closed library made calls: %v", c)
	}
}

func TestUpdateResultNames(t *testing.T) {
	for r, want := range map[UpdateResult]string{0: "success", 2: "topology changed", 8: "attributes changed", 9: "update result 9", -1: "update result -1"} {
		if got := fmt.Sprint(r); got != want {
			t.Errorf("UpdateResult(%d) = %q, want %q", int32(r), got, want)
		}
	}
}
