// fakecuda.c: a stand-in for libcuda.so.1 that package libcuda's tests
// build (cc -shared) and load. It exports the entry points package libcuda
// resolves, with the driver's signatures, and appends one line per call to
// the file named by $FAKE_CUDA_LOG: the call's name, then key=value pairs,
// structures and parameter bytes in hex, as they arrived. The test decodes
// them at the driver's documented offsets.
//
// $FAKE_CUDA_FAIL names one entry point that fails (CUDA_ERROR_INVALID_VALUE;
// cuGraphExecUpdate_v2 fails as the driver does when the topology changed).
// $FAKE_CUDA_PARAM_SIZES lists the kernel's parameter sizes ("8,8,4"), which
// a real driver knows from the kernel. Built with -DFAKE_OLD_DRIVER, it
// lacks the entry points of CUDA 11.8 and 12.0.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SUCCESS = 0, INVALID_VALUE = 1, GRAPH_EXEC_UPDATE_FAILURE = 910 };

static FILE *open_log(const char *name) {
	const char *path = getenv("FAKE_CUDA_LOG");
	FILE *f = path ? fopen(path, "a") : NULL;
	if (f) fprintf(f, "%s", name);
	return f;
}

static void close_log(FILE *f) {
	if (!f) return;
	fprintf(f, "\n");
	fclose(f);
}

static int fails(const char *name) {
	const char *s = getenv("FAKE_CUDA_FAIL");
	return s && strcmp(s, name) == 0;
}

int cuGetErrorName(int code, const char **s) {
	switch (code) {
	case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return SUCCESS;
	case GRAPH_EXEC_UPDATE_FAILURE: *s = "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE"; return SUCCESS;
	}
	*s = NULL;
	return INVALID_VALUE;
}

int cuGetErrorString(int code, const char **s) {
	switch (code) {
	case INVALID_VALUE: *s = "invalid argument"; return SUCCESS;
	case GRAPH_EXEC_UPDATE_FAILURE: *s = "the graph update was not performed"; return SUCCESS;
	}
	*s = NULL;
	return INVALID_VALUE;
}

int cuFuncSetAttribute(void *f, int attrib, int value) {
	FILE *l = open_log("cuFuncSetAttribute");
	if (l) fprintf(l, " f=%p attrib=%d value=%d", f, attrib, value);
	close_log(l);
	return fails("cuFuncSetAttribute") ? INVALID_VALUE : SUCCESS;
}

// Every attribute of every function reads as attrib*100+7.
int cuFuncGetAttribute(int *value, int attrib, void *f) {
	FILE *l = open_log("cuFuncGetAttribute");
	if (l) fprintf(l, " f=%p attrib=%d", f, attrib);
	close_log(l);
	if (fails("cuFuncGetAttribute")) return INVALID_VALUE;
	*value = attrib * 100 + 7;
	return SUCCESS;
}

int cuMemHostAlloc(void **p, size_t bytes, unsigned int flags) {
	FILE *l = open_log("cuMemHostAlloc");
	if (fails("cuMemHostAlloc") || posix_memalign(p, 4096, bytes) != 0) {
		if (l) fprintf(l, " bytes=%zu flags=%u failed", bytes, flags);
		close_log(l);
		return INVALID_VALUE;
	}
	if (l) fprintf(l, " bytes=%zu flags=%u p=%p", bytes, flags, *p);
	close_log(l);
	return SUCCESS;
}

int cuMemFreeHost(void *p) {
	FILE *l = open_log("cuMemFreeHost");
	if (l) fprintf(l, " p=%p", p);
	close_log(l);
	if (fails("cuMemFreeHost")) return INVALID_VALUE;
	free(p);
	return SUCCESS;
}

// "Copies" by filling dst with the low byte of the device address.
int cuMemcpyDtoHAsync_v2(void *dst, unsigned long long src, size_t bytes, void *stream) {
	FILE *l = open_log("cuMemcpyDtoHAsync_v2");
	if (l) fprintf(l, " dst=%p src=%#llx bytes=%zu stream=%p", dst, src, bytes, stream);
	close_log(l);
	if (fails("cuMemcpyDtoHAsync_v2")) return INVALID_VALUE;
	memset(dst, (int)(src & 0xff), bytes);
	return SUCCESS;
}

int cuStreamBeginCapture_v2(void *stream, int mode) {
	FILE *l = open_log("cuStreamBeginCapture_v2");
	if (l) fprintf(l, " stream=%p mode=%d", stream, mode);
	close_log(l);
	return fails("cuStreamBeginCapture_v2") ? INVALID_VALUE : SUCCESS;
}

// Graphs are numbered from 0x6000 on; an instantiated graph is its graph
// plus 0x100.
static uintptr_t graphs = 0x6000;

int cuStreamEndCapture(void *stream, void **graph) {
	FILE *l = open_log("cuStreamEndCapture");
	if (fails("cuStreamEndCapture")) {
		if (l) fprintf(l, " stream=%p failed", stream);
		close_log(l);
		return INVALID_VALUE;
	}
	graphs += 0x10;
	*graph = (void *)graphs;
	if (l) fprintf(l, " stream=%p graph=%p", stream, *graph);
	close_log(l);
	return SUCCESS;
}

int cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
	FILE *l = open_log("cuGraphInstantiateWithFlags");
	if (l) fprintf(l, " graph=%p flags=%llu", graph, flags);
	close_log(l);
	if (fails("cuGraphInstantiateWithFlags")) return INVALID_VALUE;
	*exec = (void *)((uintptr_t)graph + 0x100);
	return SUCCESS;
}

int cuGraphLaunch(void *exec, void *stream) {
	FILE *l = open_log("cuGraphLaunch");
	if (l) fprintf(l, " exec=%p stream=%p", exec, stream);
	close_log(l);
	return fails("cuGraphLaunch") ? INVALID_VALUE : SUCCESS;
}

int cuGraphDestroy(void *graph) {
	FILE *l = open_log("cuGraphDestroy");
	if (l) fprintf(l, " graph=%p", graph);
	close_log(l);
	return fails("cuGraphDestroy") ? INVALID_VALUE : SUCCESS;
}

int cuGraphExecDestroy(void *exec) {
	FILE *l = open_log("cuGraphExecDestroy");
	if (l) fprintf(l, " exec=%p", exec);
	close_log(l);
	return fails("cuGraphExecDestroy") ? INVALID_VALUE : SUCCESS;
}

#ifndef FAKE_OLD_DRIVER
static void hex(FILE *f, const char *key, const void *p, size_t n) {
	if (!f) return;
	fprintf(f, " %s=", key);
	for (size_t i = 0; i < n; i++) fprintf(f, "%02x", ((const unsigned char *)p)[i]);
}

// CUgraphExecUpdateResultInfo: result, error node, error-from node.
struct update_info {
	int32_t result;
	void *error_node, *error_from_node;
};

int cuGraphExecUpdate_v2(void *exec, void *graph, struct update_info *info) {
	FILE *l = open_log("cuGraphExecUpdate_v2");
	if (l) fprintf(l, " exec=%p graph=%p", exec, graph);
	close_log(l);
	if (fails("cuGraphExecUpdate_v2")) {
		info->result = 2; // CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED
		return GRAPH_EXEC_UPDATE_FAILURE;
	}
	info->result = 0;
	return SUCCESS;
}

// Records the configuration and its attributes as raw bytes, and each
// parameter's bytes read through kernelParams, $FAKE_CUDA_PARAM_SIZES long.
int cuLaunchKernelEx(const void *config, void *f, void **params, void **extra) {
	FILE *l = open_log("cuLaunchKernelEx");
	const unsigned char *c = config;
	uint32_t nattrs;
	const void *attrs;
	memcpy(&attrs, c + 40, sizeof attrs);
	memcpy(&nattrs, c + 48, sizeof nattrs);
	if (l) {
		fprintf(l, " f=%p extra=%p", f, (void *)extra);
		hex(l, "config", config, 56);
		hex(l, "attrs", attrs, (size_t)nattrs * 72);
		fprintf(l, " params=");
		const char *sizes = getenv("FAKE_CUDA_PARAM_SIZES");
		for (int i = 0; sizes && *sizes; i++) {
			char *end;
			long n = strtol(sizes, &end, 10);
			if (i > 0) fprintf(l, ",");
			for (long j = 0; j < n; j++) fprintf(l, "%02x", ((const unsigned char *)params[i])[j]);
			sizes = *end == ',' ? end + 1 : end;
		}
	}
	close_log(l);
	return fails("cuLaunchKernelEx") ? INVALID_VALUE : SUCCESS;
}

// Records every argument (the arrays tensorRank long, the strides one
// fewer) and the map's alignment, and writes bytes 1..128 into the map.
int cuTensorMapEncodeTiled(void *map, int dtype, uint32_t rank, void *base, const uint64_t *dims,
                           const uint64_t *strides, const uint32_t *box, const uint32_t *elem_strides, int interleave,
                           int swizzle, int l2, int oob) {
	FILE *l = open_log("cuTensorMapEncodeTiled");
	if (l) {
		fprintf(l, " align128=%d dtype=%d rank=%u base=%p interleave=%d swizzle=%d l2=%d oob=%d",
		        (int)((uintptr_t)map % 128 == 0), dtype, rank, base, interleave, swizzle, l2, oob);
		hex(l, "dims", dims, rank * sizeof *dims);
		hex(l, "strides", strides, (rank - 1) * sizeof *strides);
		hex(l, "box", box, rank * sizeof *box);
		hex(l, "elemstrides", elem_strides, rank * sizeof *elem_strides);
	}
	close_log(l);
	if (fails("cuTensorMapEncodeTiled")) return INVALID_VALUE;
	for (int i = 0; i < 128; i++) ((unsigned char *)map)[i] = (unsigned char)(i + 1);
	return SUCCESS;
}
#endif
