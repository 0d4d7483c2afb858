//go:build cuda

package libcuda

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The driver's types, as cuda.h (CUDA 12 and 13) lays them out on 64-bit
// Linux. Handles (CUfunction, CUstream, CUgraph, CUgraphExec) are opaque
// pointers and travel as uintptr_t; enums are passed as 32-bit integers.

// CUlaunchAttribute: a 4-byte id, padding to 8, a 64-byte value union.
typedef struct {
	uint32_t id;
	char pad[4];
	union {
		char raw[64];
		uint64_t align;
		struct { uint32_t x, y, z; } clusterDim;
	} value;
} dc_launch_attribute;

// CUlaunchConfig.
typedef struct {
	uint32_t gridDimX, gridDimY, gridDimZ;
	uint32_t blockDimX, blockDimY, blockDimZ;
	uint32_t sharedMemBytes;
	void *hStream;
	dc_launch_attribute *attrs;
	uint32_t numAttrs;
} dc_launch_config;

// CUtensorMap: 16 opaque 64-bit words. CUDA 12 aligns it to 64 bytes,
// CUDA 13 to 128; 128 satisfies both.
typedef struct {
	_Alignas(128) uint64_t opaque[16];
} dc_tensor_map;

// CUgraphExecUpdateResultInfo (cuGraphExecUpdate_v2).
typedef struct {
	int32_t result;
	void *errorNode;
	void *errorFromNode;
} dc_graph_exec_update_info;

_Static_assert(sizeof(dc_launch_attribute) == 72, "CUlaunchAttribute is 72 bytes");
_Static_assert(offsetof(dc_launch_attribute, value) == 8, "CUlaunchAttribute.value is at byte 8");
_Static_assert(sizeof(dc_launch_config) == 56, "CUlaunchConfig is 56 bytes");
_Static_assert(offsetof(dc_launch_config, sharedMemBytes) == 24, "CUlaunchConfig.sharedMemBytes is at byte 24");
_Static_assert(offsetof(dc_launch_config, hStream) == 32, "CUlaunchConfig.hStream is at byte 32");
_Static_assert(offsetof(dc_launch_config, attrs) == 40, "CUlaunchConfig.attrs is at byte 40");
_Static_assert(offsetof(dc_launch_config, numAttrs) == 48, "CUlaunchConfig.numAttrs is at byte 48");
_Static_assert(sizeof(dc_tensor_map) == 128, "CUtensorMap is 128 bytes");
_Static_assert(_Alignof(dc_tensor_map) >= 64, "CUtensorMap is aligned to 64 bytes or more");
_Static_assert(sizeof(dc_graph_exec_update_info) == 24, "CUgraphExecUpdateResultInfo is 24 bytes");

enum { DC_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION = 4 };

// A call that could not start because host memory ran out.
enum { DC_NO_HOST_MEMORY = -1 };

// dlopen and dlclose with dlerror's message copied into err on failure, in
// the same C call: dlerror's state is per OS thread, and a goroutine may
// move between threads from one cgo call to the next.
static void *dc_dlopen(const char *path, char *err, size_t n) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) snprintf(err, n, "%s", dlerror());
	return h;
}

static int dc_dlclose(void *h, char *err, size_t n) {
	int r = dlclose(h);
	if (r != 0) snprintf(err, n, "%s", dlerror());
	return r;
}

static const char *dc_error_name(void *sym, int code) {
	const char *s = NULL;
	if (sym == NULL || ((int (*)(int, const char **))sym)(code, &s) != 0) return NULL;
	return s;
}

static int dc_func_set_attribute(void *sym, uintptr_t f, int attrib, int value) {
	return ((int (*)(void *, int, int))sym)((void *)f, attrib, value);
}

static int dc_func_get_attribute(void *sym, int *value, int attrib, uintptr_t f) {
	return ((int (*)(int *, int, void *))sym)(value, attrib, (void *)f);
}

// dims holds the grid, the block and the cluster (x, y, z each); a cluster
// of all zeros adds no attribute. The parameters are packed back to back in
// data, sizes[i] bytes each; they are copied into C memory, each at a
// 16-byte boundary, and kernelParams points at every copy.
static int dc_launch_kernel_ex(void *sym, uintptr_t f, const uint32_t *dims, uint32_t shared, uintptr_t stream,
                               int nparams, const uint32_t *sizes, const unsigned char *data) {
	size_t total = 0;
	for (int i = 0; i < nparams; i++) total += ((size_t)sizes[i] + 15) & ~(size_t)15;
	void **ptrs = malloc((nparams > 0 ? nparams : 1) * sizeof(void *));
	unsigned char *buf = NULL;
	if (ptrs == NULL || posix_memalign((void **)&buf, 128, total > 0 ? total : 16) != 0) {
		free(ptrs);
		return DC_NO_HOST_MEMORY;
	}
	memset(buf, 0, total > 0 ? total : 16);  // no stray bytes beside a parameter shorter than its slot
	size_t at = 0, off = 0;
	for (int i = 0; i < nparams; i++) {
		memcpy(buf + off, data + at, sizes[i]);
		ptrs[i] = buf + off;
		at += sizes[i];
		off += ((size_t)sizes[i] + 15) & ~(size_t)15;
	}
	dc_launch_attribute attr;
	memset(&attr, 0, sizeof attr);
	dc_launch_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.gridDimX = dims[0], cfg.gridDimY = dims[1], cfg.gridDimZ = dims[2];
	cfg.blockDimX = dims[3], cfg.blockDimY = dims[4], cfg.blockDimZ = dims[5];
	cfg.sharedMemBytes = shared;
	cfg.hStream = (void *)stream;
	if (dims[6] != 0) {
		attr.id = DC_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
		attr.value.clusterDim.x = dims[6];
		attr.value.clusterDim.y = dims[7];
		attr.value.clusterDim.z = dims[8];
		cfg.attrs = &attr;
		cfg.numAttrs = 1;
	}
	int r = ((int (*)(const dc_launch_config *, void *, void **, void **))sym)(&cfg, (void *)f, ptrs, NULL);
	free(buf);
	free(ptrs);
	return r;
}

// enums: data type, interleave, swizzle, L2 promotion, out-of-bounds fill.
static int dc_tensor_map_encode_tiled(void *sym, unsigned char *out, const uint32_t *enums, uint32_t rank, uintptr_t base,
                                      const uint64_t *dims, const uint64_t *strides, const uint32_t *box,
                                      const uint32_t *elem_strides) {
	dc_tensor_map m;
	memset(&m, 0, sizeof m);
	int r = ((int (*)(dc_tensor_map *, uint32_t, uint32_t, void *, const uint64_t *, const uint64_t *, const uint32_t *,
	                  const uint32_t *, uint32_t, uint32_t, uint32_t, uint32_t))sym)(
	    &m, enums[0], rank, (void *)base, dims, strides, box, elem_strides, enums[1], enums[2], enums[3], enums[4]);
	memcpy(out, &m, sizeof m);
	return r;
}

static int dc_mem_host_alloc(void *sym, void **p, size_t bytes, uint32_t flags) {
	return ((int (*)(void **, size_t, uint32_t))sym)(p, bytes, flags);
}

static int dc_mem_free_host(void *sym, uintptr_t p) { return ((int (*)(void *))sym)((void *)p); }

static int dc_memcpy_dtoh_async(void *sym, uintptr_t dst, uint64_t src, size_t bytes, uintptr_t stream) {
	return ((int (*)(void *, uint64_t, size_t, void *))sym)((void *)dst, src, bytes, (void *)stream);
}

static int dc_stream_begin_capture(void *sym, uintptr_t stream, int mode) {
	return ((int (*)(void *, int))sym)((void *)stream, mode);
}

static int dc_stream_end_capture(void *sym, uintptr_t stream, uintptr_t *graph) {
	void *g = NULL;
	int r = ((int (*)(void *, void **))sym)((void *)stream, &g);
	*graph = (uintptr_t)g;
	return r;
}

static int dc_graph_instantiate(void *sym, uintptr_t *exec, uintptr_t graph, unsigned long long flags) {
	void *e = NULL;
	int r = ((int (*)(void **, void *, unsigned long long))sym)(&e, (void *)graph, flags);
	*exec = (uintptr_t)e;
	return r;
}

static int dc_graph_exec_update(void *sym, uintptr_t exec, uintptr_t graph, int *result) {
	dc_graph_exec_update_info info;
	memset(&info, 0, sizeof info);
	int r = ((int (*)(void *, void *, dc_graph_exec_update_info *))sym)((void *)exec, (void *)graph, &info);
	*result = info.result;
	return r;
}

static int dc_graph_launch(void *sym, uintptr_t exec, uintptr_t stream) {
	return ((int (*)(void *, void *))sym)((void *)exec, (void *)stream);
}

// cuGraphDestroy and cuGraphExecDestroy: one handle in, a status out.
static int dc_destroy(void *sym, uintptr_t h) { return ((int (*)(void *))sym)((void *)h); }
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// DefaultPath is the library Open loads when given no path: the driver's
// soname, which the NVIDIA driver installs on every GPU host.
const DefaultPath = "libcuda.so.1"

// The entry points, by the names libcuda exports. cuda.h maps the API names
// to versioned symbols (cuStreamBeginCapture to cuStreamBeginCapture_v2 and
// so on); dlsym needs those.
type symbol int

const (
	symGetErrorName symbol = iota
	symGetErrorString
	symFuncSetAttribute
	symFuncGetAttribute
	symLaunchKernelEx
	symTensorMapEncodeTiled
	symMemHostAlloc
	symMemFreeHost
	symMemcpyDtoHAsync
	symStreamBeginCapture
	symStreamEndCapture
	symGraphInstantiate
	symGraphExecUpdate
	symGraphLaunch
	symGraphDestroy
	symGraphExecDestroy
	symCount
)

var symbols = [symCount]struct{ name, since string }{
	symGetErrorName:         {"cuGetErrorName", "6.0"},
	symGetErrorString:       {"cuGetErrorString", "6.0"},
	symFuncSetAttribute:     {"cuFuncSetAttribute", "9.0"},
	symFuncGetAttribute:     {"cuFuncGetAttribute", "2.0"},
	symLaunchKernelEx:       {"cuLaunchKernelEx", "11.8"},
	symTensorMapEncodeTiled: {"cuTensorMapEncodeTiled", "12.0"},
	symMemHostAlloc:         {"cuMemHostAlloc", "2.2"},
	symMemFreeHost:          {"cuMemFreeHost", "2.0"},
	symMemcpyDtoHAsync:      {"cuMemcpyDtoHAsync_v2", "3.2"},
	symStreamBeginCapture:   {"cuStreamBeginCapture_v2", "10.1"},
	symStreamEndCapture:     {"cuStreamEndCapture", "10.0"},
	symGraphInstantiate:     {"cuGraphInstantiateWithFlags", "11.4"},
	symGraphExecUpdate:      {"cuGraphExecUpdate_v2", "12.0"},
	symGraphLaunch:          {"cuGraphLaunch", "10.0"},
	symGraphDestroy:         {"cuGraphDestroy", "10.0"},
	symGraphExecDestroy:     {"cuGraphExecDestroy", "10.0"},
}

// Handles of the driver's objects. Function and Stream come from whoever
// created them (the caller's module loader and stream); a zero Stream is
// the legacy default stream.
type (
	Function  uintptr
	Stream    uintptr
	Graph     uintptr
	GraphExec uintptr
)

// Lib is an opened libcuda. Its methods make one driver call each, on the
// calling thread's current context; they are not safe for concurrent use
// with Close.
type Lib struct {
	path   string
	handle unsafe.Pointer
	syms   [symCount]unsafe.Pointer
}

// Open loads the driver library at path (DefaultPath when empty) and
// resolves the entry points it has. A library that cannot be loaded is an
// error; an entry point it lacks fails only the calls that need it.
func Open(path string) (*Lib, error) {
	if path == "" {
		path = DefaultPath
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg [512]C.char
	h := C.dc_dlopen(cpath, &msg[0], C.size_t(len(msg)))
	if h == nil {
		return nil, fmt.Errorf("libcuda: cannot load %s: %s (is the NVIDIA driver installed?)", path, C.GoString(&msg[0]))
	}
	l := &Lib{path: path, handle: h}
	for i, s := range symbols {
		name := C.CString(s.name)
		l.syms[i] = C.dlsym(h, name)
		C.free(unsafe.Pointer(name))
	}
	return l, nil
}

// Path is the library Open loaded.
func (l *Lib) Path() string { return l.path }

// Close unloads the library; every later call returns an error.
func (l *Lib) Close() error {
	if l.handle == nil {
		return nil
	}
	h := l.handle
	*l = Lib{path: l.path}
	var msg [512]C.char
	if C.dc_dlclose(h, &msg[0], C.size_t(len(msg))) != 0 {
		return fmt.Errorf("libcuda: closing %s: %s", l.path, C.GoString(&msg[0]))
	}
	return nil
}

// Error is a call the driver refused: its CUresult code, with the driver's
// name and description for it when the library has them.
type Error struct {
	Call string
	Code int
	Name string // e.g. CUDA_ERROR_INVALID_VALUE
	Text string // e.g. "invalid argument"
}

func (e *Error) Error() string {
	s := fmt.Sprintf("libcuda: %s: error %d", e.Call, e.Code)
	if e.Name != "" {
		s = fmt.Sprintf("libcuda: %s: %s (%d)", e.Call, e.Name, e.Code)
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// ErrNoHostMemory is a call that could not marshal its arguments.
var ErrNoHostMemory = errors.New("libcuda: out of host memory for a call's arguments")

// sym returns entry point s, or why it cannot be called.
func (l *Lib) sym(s symbol) (unsafe.Pointer, error) {
	if l.handle == nil {
		return nil, fmt.Errorf("libcuda: %s: the library is closed", symbols[s].name)
	}
	p := l.syms[s]
	if p == nil {
		return nil, fmt.Errorf("libcuda: %s is not in %s: the driver is older than CUDA %s", symbols[s].name, l.path, symbols[s].since)
	}
	return p, nil
}

// check turns a call's status into an error.
func (l *Lib) check(s symbol, r C.int) error {
	switch r {
	case 0:
		return nil
	case C.DC_NO_HOST_MEMORY:
		return fmt.Errorf("%w (%s)", ErrNoHostMemory, symbols[s].name)
	}
	e := &Error{Call: symbols[s].name, Code: int(r)}
	if l.handle != nil {
		if n := C.dc_error_name(l.syms[symGetErrorName], r); n != nil {
			e.Name = C.GoString(n)
		}
		if t := C.dc_error_name(l.syms[symGetErrorString], r); t != nil {
			e.Text = C.GoString(t)
		}
	}
	return e
}

// FuncAttribute is a CUfunction_attribute.
type FuncAttribute int32

const (
	FuncMaxThreadsPerBlock FuncAttribute = 0
	FuncNumRegs            FuncAttribute = 4
	// FuncMaxDynamicSharedSize is the most dynamic shared memory a launch
	// of the function may ask for; above 48 KiB a kernel must be allowed
	// it explicitly.
	FuncMaxDynamicSharedSize FuncAttribute = 8
)

// FuncSetAttribute sets attribute a of function f (cuFuncSetAttribute).
func (l *Lib) FuncSetAttribute(f Function, a FuncAttribute, value int) error {
	sym, err := l.sym(symFuncSetAttribute)
	if err != nil {
		return err
	}
	if f == 0 {
		return errors.New("libcuda: cuFuncSetAttribute: no function")
	}
	if value < math.MinInt32 || value > math.MaxInt32 {
		return fmt.Errorf("libcuda: cuFuncSetAttribute: value %d does not fit an int", value)
	}
	return l.check(symFuncSetAttribute, C.dc_func_set_attribute(sym, C.uintptr_t(f), C.int(a), C.int(value)))
}

// FuncGetAttribute reads attribute a of function f (cuFuncGetAttribute).
func (l *Lib) FuncGetAttribute(f Function, a FuncAttribute) (int, error) {
	sym, err := l.sym(symFuncGetAttribute)
	if err != nil {
		return 0, err
	}
	if f == 0 {
		return 0, errors.New("libcuda: cuFuncGetAttribute: no function")
	}
	var v C.int
	if err := l.check(symFuncGetAttribute, C.dc_func_get_attribute(sym, &v, C.int(a), C.uintptr_t(f))); err != nil {
		return 0, err
	}
	return int(v), nil
}

// Launch is the geometry of a cuLaunchKernelEx call. A Cluster of all zeros
// launches without the cluster-dimension attribute.
type Launch struct {
	Grid, Block, Cluster [3]uint32
	SharedBytes          uint32
	Stream               Stream
}

// MaxParamBytes is the most kernel parameter bytes a launch may pass
// (CUDA 12.1 and later on Volta and newer; older drivers allow 4 KiB and
// refuse more themselves).
const MaxParamBytes = 32764

// LaunchKernelEx launches f (cuLaunchKernelEx). params holds each kernel
// parameter's bytes, as large as the kernel declares the parameter; the
// driver copies them at the call, so they are free for reuse on return.
func (l *Lib) LaunchKernelEx(f Function, g Launch, params [][]byte) error {
	sym, err := l.sym(symLaunchKernelEx)
	if err != nil {
		return err
	}
	if f == 0 {
		return errors.New("libcuda: cuLaunchKernelEx: no function")
	}
	for i := range 3 {
		if g.Grid[i] == 0 || g.Block[i] == 0 {
			return fmt.Errorf("libcuda: cuLaunchKernelEx: grid %v and block %v must be at least 1 in each dimension", g.Grid, g.Block)
		}
	}
	if c := g.Cluster; (c[0] == 0 || c[1] == 0 || c[2] == 0) && c != [3]uint32{} {
		return fmt.Errorf("libcuda: cuLaunchKernelEx: cluster %v must be all zeros (none) or at least 1 in each dimension", c)
	}
	sizes := make([]C.uint32_t, len(params))
	total := 0
	for i, p := range params {
		if len(p) == 0 {
			return fmt.Errorf("libcuda: cuLaunchKernelEx: parameter %d is empty", i)
		}
		sizes[i] = C.uint32_t(len(p))
		total += len(p)
		if total > MaxParamBytes {
			return fmt.Errorf("libcuda: cuLaunchKernelEx: %d parameters take more than %d bytes", len(params), MaxParamBytes)
		}
	}
	data := make([]byte, 0, total+1) // +1: a valid pointer even without parameters
	for _, p := range params {
		data = append(data, p...)
	}
	dims := [9]C.uint32_t{
		C.uint32_t(g.Grid[0]), C.uint32_t(g.Grid[1]), C.uint32_t(g.Grid[2]),
		C.uint32_t(g.Block[0]), C.uint32_t(g.Block[1]), C.uint32_t(g.Block[2]),
		C.uint32_t(g.Cluster[0]), C.uint32_t(g.Cluster[1]), C.uint32_t(g.Cluster[2]),
	}
	var sizesp *C.uint32_t
	if len(sizes) > 0 {
		sizesp = &sizes[0]
	}
	return l.check(symLaunchKernelEx, C.dc_launch_kernel_ex(sym, C.uintptr_t(f), &dims[0], C.uint32_t(g.SharedBytes),
		C.uintptr_t(g.Stream), C.int(len(params)), sizesp, (*C.uchar)(unsafe.Pointer(unsafe.SliceData(data)))))
}

// TensorMapTiled is the arguments of cuTensorMapEncodeTiled, with the
// driver's enum values: Rank = len(Dims) dimensions, innermost first;
// Strides has Rank-1 entries (the byte strides of dimensions 1..Rank-1);
// Box and ElemStrides have Rank.
type TensorMapTiled struct {
	DataType    uint32
	Base        uintptr
	Dims        []uint64
	Strides     []uint64
	Box         []uint32
	ElemStrides []uint32
	Interleave  uint32
	Swizzle     uint32
	L2Promotion uint32
	OOBFill     uint32
}

// MaxTensorRank is the most dimensions a tensor map has.
const MaxTensorRank = 5

// TensorMapEncodeTiled encodes a tiled tensor map (cuTensorMapEncodeTiled)
// and returns its 128 bytes.
func (l *Lib) TensorMapEncodeTiled(a TensorMapTiled) ([128]byte, error) {
	var out [128]byte
	sym, err := l.sym(symTensorMapEncodeTiled)
	if err != nil {
		return out, err
	}
	rank := len(a.Dims)
	if rank < 1 || rank > MaxTensorRank {
		return out, fmt.Errorf("libcuda: cuTensorMapEncodeTiled: rank %d, want 1 to %d", rank, MaxTensorRank)
	}
	if len(a.Strides) != rank-1 || len(a.Box) != rank || len(a.ElemStrides) != rank {
		return out, fmt.Errorf("libcuda: cuTensorMapEncodeTiled: rank %d with %d strides, %d box and %d element strides (want %d, %d, %d)",
			rank, len(a.Strides), len(a.Box), len(a.ElemStrides), rank-1, rank, rank)
	}
	// Fixed arrays, so that the driver reads zeros, not past the end, if it
	// looks at an entry beyond the rank.
	var dims, strides [MaxTensorRank]C.uint64_t
	var box, estr [MaxTensorRank]C.uint32_t
	for i := range rank {
		dims[i] = C.uint64_t(a.Dims[i])
		box[i] = C.uint32_t(a.Box[i])
		estr[i] = C.uint32_t(a.ElemStrides[i])
	}
	for i, s := range a.Strides {
		strides[i] = C.uint64_t(s)
	}
	enums := [5]C.uint32_t{C.uint32_t(a.DataType), C.uint32_t(a.Interleave), C.uint32_t(a.Swizzle),
		C.uint32_t(a.L2Promotion), C.uint32_t(a.OOBFill)}
	r := C.dc_tensor_map_encode_tiled(sym, (*C.uchar)(unsafe.Pointer(&out[0])), &enums[0], C.uint32_t(rank),
		C.uintptr_t(a.Base), &dims[0], &strides[0], &box[0], &estr[0])
	if err := l.check(symTensorMapEncodeTiled, r); err != nil {
		return [128]byte{}, err
	}
	return out, nil
}

// MemHostAlloc returns bytes of page-locked host memory (cuMemHostAlloc
// with flags), as a slice over driver-owned memory: free it with
// MemFreeHost, and use no part of it after.
func (l *Lib) MemHostAlloc(bytes int, flags uint32) ([]byte, error) {
	sym, err := l.sym(symMemHostAlloc)
	if err != nil {
		return nil, err
	}
	if bytes <= 0 {
		return nil, fmt.Errorf("libcuda: cuMemHostAlloc: %d bytes", bytes)
	}
	var p unsafe.Pointer
	if err := l.check(symMemHostAlloc, C.dc_mem_host_alloc(sym, &p, C.size_t(bytes), C.uint32_t(flags))); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("libcuda: cuMemHostAlloc returned no memory")
	}
	return unsafe.Slice((*byte)(p), bytes), nil
}

// MemFreeHost releases memory from MemHostAlloc (cuMemFreeHost); b must be
// the whole slice MemHostAlloc returned.
func (l *Lib) MemFreeHost(b []byte) error {
	sym, err := l.sym(symMemFreeHost)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("libcuda: cuMemFreeHost: no memory")
	}
	return l.check(symMemFreeHost, C.dc_mem_free_host(sym, C.uintptr_t(uintptr(unsafe.Pointer(&b[0])))))
}

// MemcpyDtoHAsync copies len(dst) bytes from device address src into dst
// on the stream (cuMemcpyDtoHAsync). dst must be page-locked memory from
// MemHostAlloc: the copy may still run when the call returns.
func (l *Lib) MemcpyDtoHAsync(dst []byte, src uintptr, s Stream) error {
	sym, err := l.sym(symMemcpyDtoHAsync)
	if err != nil {
		return err
	}
	if len(dst) == 0 || src == 0 {
		return fmt.Errorf("libcuda: cuMemcpyDtoHAsync: %d bytes from device address %#x", len(dst), src)
	}
	return l.check(symMemcpyDtoHAsync, C.dc_memcpy_dtoh_async(sym, C.uintptr_t(uintptr(unsafe.Pointer(&dst[0]))),
		C.uint64_t(src), C.size_t(len(dst)), C.uintptr_t(s)))
}

// CaptureMode is a CUstreamCaptureMode: which threads' unsafe calls (such
// as cuMemAlloc) a capture forbids while it runs.
type CaptureMode int32

const (
	CaptureGlobal      CaptureMode = 0
	CaptureThreadLocal CaptureMode = 1
	CaptureRelaxed     CaptureMode = 2
)

// StreamBeginCapture starts capturing stream s's work into a graph
// (cuStreamBeginCapture).
func (l *Lib) StreamBeginCapture(s Stream, mode CaptureMode) error {
	sym, err := l.sym(symStreamBeginCapture)
	if err != nil {
		return err
	}
	if s == 0 {
		return errors.New("libcuda: cuStreamBeginCapture: the legacy default stream cannot be captured")
	}
	if mode < CaptureGlobal || mode > CaptureRelaxed {
		return fmt.Errorf("libcuda: cuStreamBeginCapture: capture mode %d", mode)
	}
	return l.check(symStreamBeginCapture, C.dc_stream_begin_capture(sym, C.uintptr_t(s), C.int(mode)))
}

// StreamEndCapture ends the capture on s and returns the graph
// (cuStreamEndCapture).
func (l *Lib) StreamEndCapture(s Stream) (Graph, error) {
	sym, err := l.sym(symStreamEndCapture)
	if err != nil {
		return 0, err
	}
	if s == 0 {
		return 0, errors.New("libcuda: cuStreamEndCapture: no stream")
	}
	var g C.uintptr_t
	if err := l.check(symStreamEndCapture, C.dc_stream_end_capture(sym, C.uintptr_t(s), &g)); err != nil {
		return 0, err
	}
	if g == 0 {
		return 0, errors.New("libcuda: cuStreamEndCapture returned no graph")
	}
	return Graph(g), nil
}

// GraphInstantiate makes an executable graph of g
// (cuGraphInstantiateWithFlags).
func (l *Lib) GraphInstantiate(g Graph, flags uint64) (GraphExec, error) {
	sym, err := l.sym(symGraphInstantiate)
	if err != nil {
		return 0, err
	}
	if g == 0 {
		return 0, errors.New("libcuda: cuGraphInstantiateWithFlags: no graph")
	}
	var e C.uintptr_t
	if err := l.check(symGraphInstantiate, C.dc_graph_instantiate(sym, &e, C.uintptr_t(g), C.ulonglong(flags))); err != nil {
		return 0, err
	}
	if e == 0 {
		return 0, errors.New("libcuda: cuGraphInstantiateWithFlags returned no executable graph")
	}
	return GraphExec(e), nil
}

// UpdateResult is a CUgraphExecUpdateResult: why an update was refused.
type UpdateResult int32

var updateResults = []string{
	"success", "error", "topology changed", "node type changed", "function changed",
	"parameters changed", "not supported", "unsupported function change", "attributes changed",
}

func (u UpdateResult) String() string {
	if u >= 0 && int(u) < len(updateResults) {
		return updateResults[u]
	}
	return fmt.Sprintf("update result %d", int32(u))
}

// GraphExecUpdate updates exec in place to run g (cuGraphExecUpdate). When
// the driver refuses, the error says why (the update result).
func (l *Lib) GraphExecUpdate(exec GraphExec, g Graph) error {
	sym, err := l.sym(symGraphExecUpdate)
	if err != nil {
		return err
	}
	if exec == 0 || g == 0 {
		return errors.New("libcuda: cuGraphExecUpdate: no graph")
	}
	var res C.int
	if err := l.check(symGraphExecUpdate, C.dc_graph_exec_update(sym, C.uintptr_t(exec), C.uintptr_t(g), &res)); err != nil {
		return fmt.Errorf("%w (%s)", err, UpdateResult(res))
	}
	return nil
}

// GraphLaunch runs exec on stream s (cuGraphLaunch).
func (l *Lib) GraphLaunch(exec GraphExec, s Stream) error {
	sym, err := l.sym(symGraphLaunch)
	if err != nil {
		return err
	}
	if exec == 0 {
		return errors.New("libcuda: cuGraphLaunch: no graph")
	}
	return l.check(symGraphLaunch, C.dc_graph_launch(sym, C.uintptr_t(exec), C.uintptr_t(s)))
}

// GraphDestroy releases g (cuGraphDestroy).
func (l *Lib) GraphDestroy(g Graph) error { return l.destroy(symGraphDestroy, uintptr(g)) }

// GraphExecDestroy releases exec (cuGraphExecDestroy).
func (l *Lib) GraphExecDestroy(exec GraphExec) error {
	return l.destroy(symGraphExecDestroy, uintptr(exec))
}

func (l *Lib) destroy(s symbol, h uintptr) error {
	sym, err := l.sym(s)
	if err != nil {
		return err
	}
	if h == 0 {
		return fmt.Errorf("libcuda: %s: no graph", symbols[s].name)
	}
	return l.check(s, C.dc_destroy(sym, C.uintptr_t(h)))
}
