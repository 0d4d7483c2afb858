//go:build !purego

package vec32

import "golang.org/x/sys/cpu"

var hasAVX2 = cpu.X86.HasAVX2

// adamwLen is the prefix of n elements AdamW does: whole vectors of 8.
func adamwLen(n int) int {
	if !useAsm {
		return 0
	}
	return n &^ 7
}

//go:noescape
func adamw(n int, param, grad, mom1, mom2 *float32, c *AdamWConsts)
