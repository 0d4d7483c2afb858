//go:build !purego

package vec32

import "golang.org/x/sys/cpu"

// haveAsm says whether this CPU runs the assembly loops (adamw_amd64.s,
// passes_amd64.s); useAsm whether they are used (see UseAssembly).
var (
	haveAsm = hasAVX2
	useAsm  = haveAsm
)

//go:noescape
func sumLanes(n int, x *float32, l *lanes)

//go:noescape
func dotLanes(n int, x, y *float32, l *lanes)

//go:noescape
func sqDevLanes(n int, x *float32, mean float64, l *lanes)

//go:noescape
func addTo(n int, acc *float64, x *float32)

//go:noescape
func layerNormApply(n int, y, xhat, x, gamma, beta *float32, mean, rstd float64)

//go:noescape
func axpby(n int, dst, x, y *float32, a, b float64)

// haveFMA says whether the CPU runs the GELU loops, which fuse.
var haveFMA = cpu.X86.HasFMA

//go:noescape
func geluAVX2(n int, y, x *float32, c *float32)

//go:noescape
func geluBodyAVX2(n int, y, x *float32, c *float32, outX *float32, outAt *int32) int

//go:noescape
func geluBodyGradMulAVX2(n int, dx, dy, x *float32, c *float32, outX, outDy *float32, outAt *int32) int

//go:noescape
func geluScatterAVX2(k int, y, outY, outX *float32, outAt *int32)

//go:noescape
func geluGradMulAVX2(n int, dx, dy, x *float32, c *float32)
