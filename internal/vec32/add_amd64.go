//go:build !purego

package vec32

//go:noescape
func add(n int, dst, x, y *float32)
