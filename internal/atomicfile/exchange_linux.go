package atomicfile

import "golang.org/x/sys/unix"

// ExchangeDirs swaps the directories a and b in one step
// (renameat2 RENAME_EXCHANGE); an error when the filesystem cannot.
func ExchangeDirs(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}
