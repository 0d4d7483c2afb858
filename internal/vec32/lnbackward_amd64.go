//go:build !purego

package vec32

//go:noescape
func lnBackwardColumns(n int, dy *float32, gamma *float64, xhat *float32, l1, l2 *lanes, prod, sum *float64)

//go:noescape
func lnBackwardApply(n int, dx, dy, xhat *float32, gamma *float64, meanG, meanGX, rstd float64)

//go:noescape
func lnBackwardColumns2(n, stride int, dy *float32, gamma *float64, xhat *float32, l *[2]rowLanes, prod, sum *float64)

//go:noescape
func accumulate(n int, dst, x *float64)
