//go:build cuda

package gpuprobe

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
*/
import "C"

import (
	"fmt"
	"os"
)

func init() {
	r := C.cuInit(0)
	if r == C.CUDA_SUCCESS {
		return
	}
	var name *C.char
	desc := fmt.Sprintf("error %d", int(r))
	if C.cuGetErrorName(r, &name) == C.CUDA_SUCCESS && name != nil {
		desc = C.GoString(name)
	}
	fmt.Fprintf(os.Stderr, "dinoclip: this program was built with -tags cuda and needs an NVIDIA GPU with its driver, "+
		"but the CUDA driver cannot be initialised here (cuInit: %s).\n"+
		"Run it on a GPU host, or use the default build (make build), which trains and evaluates on the CPU.\n", desc)
	os.Exit(1)
}
