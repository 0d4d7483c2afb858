//go:build unix

package synth

import (
	"os"
	"syscall"
)

// renameDir renames the directory oldpath onto newpath with rename(2)
// itself, which replaces an empty directory at newpath in one step (Go's
// os.Rename refuses any directory there before asking the system).
func renameDir(oldpath, newpath string) error {
	if err := syscall.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// sameOwner gives path the owner and group of the file st describes, as
// far as this process may: root both; anyone else the group, when it is
// one of theirs (else path keeps its own).
func sameOwner(path string, st os.FileInfo) {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	uid := -1
	if os.Geteuid() == 0 {
		uid = int(s.Uid)
	}
	os.Lchown(path, uid, int(s.Gid))
}
