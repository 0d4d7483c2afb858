//go:build purego || !amd64

package vec32

func add(n int, dst, x, y *float32) { noAsm() }
