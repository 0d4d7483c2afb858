//go:build unix

package sysmem

import "syscall"

// addressSpaceLeft is what the process's address-space limit (ulimit -v,
// RLIMIT_AS) leaves: the limit minus the virtual memory already mapped
// (VmSize in /proc/self/status). limited is false without a limit.
func addressSpaceLeft(status []byte) (left uint64, limited bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &rl); err != nil || rl.Cur == ^uint64(0) {
		return 0, false
	}
	size, ok := statusKB(status, "VmSize:")
	if !ok {
		return 0, false
	}
	if size >= rl.Cur {
		return 0, true
	}
	return rl.Cur - size, true
}
