//go:build purego || !amd64

package vec32

// Without assembly the Go loops do everything.
var haveAsm, useAsm = false, false

func noAsm() { panic("vec32: no assembly in this build") }

func sumLanes(n int, x *float32, l *lanes)                                 { noAsm() }
func dotLanes(n int, x, y *float32, l *lanes)                              { noAsm() }
func sqDevLanes(n int, x *float32, mean float64, l *lanes)                 { noAsm() }
func addTo(n int, acc *float64, x *float32)                                { noAsm() }
func layerNormApply(n int, y, xhat, x, gamma, beta *float32, m, r float64) { noAsm() }

func axpby(n int, dst, x, y *float32, a, b float64)                { noAsm() }
func geluAVX2(n int, y, x *float32, c *float32)                    { noAsm() }
func geluBodyAVX2(n int, y, x, c, outX *float32, outAt *int32) int { noAsm(); return 0 }
func geluScatterAVX2(k int, y, outY, outX *float32, outAt *int32)  { noAsm() }
func geluBodyGradMulAVX2(n int, dx, dy, x, c, outX, outDy *float32, outAt *int32) int {
	noAsm()
	return 0
}
func geluGradMulAVX2(n int, dx, dy, x *float32, c *float32) { noAsm() }

const haveFMA = false
