//go:build unix && !openbsd

package sysmem

import (
	"math"
	"syscall"
)

// addressSpaceLeft is what the process's address-space limit (ulimit -v,
// RLIMIT_AS) leaves: the limit minus the virtual memory already mapped
// (VmSize in /proc/self/status). limited is false without a limit.
func addressSpaceLeft(status []byte) (left uint64, limited bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &rl); err != nil {
		return 0, false
	}
	// (Cur is a uint64 on Linux and macOS, an int64 on the BSDs, whose
	// infinity is the largest int64.)
	limit := uint64(rl.Cur)
	if limit == ^uint64(0) || limit == math.MaxInt64 {
		return 0, false
	}
	size, ok := statusKB(status, "VmSize:")
	if !ok {
		return 0, false
	}
	if size >= limit {
		return 0, true
	}
	return limit - size, true
}
