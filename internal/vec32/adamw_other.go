//go:build purego || !amd64

package vec32

// adamwLen is 0 without assembly: the caller's scalar loop does all.
func adamwLen(n int) int { return 0 }

func adamw(n int, param, grad, mom1, mom2 *float32, c *AdamWConsts) { panic("vec32: no assembly") }
