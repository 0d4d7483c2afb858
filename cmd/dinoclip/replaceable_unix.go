//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/dinoclip/dinoclip/internal/mountpoint"
)

// checkReplaceable refuses a search output directory out (st its
// information) that writeSearch could not replace by renaming: a
// read-only one (the old output's files could not be removed after), or a
// mount point (it cannot be renamed; its device is not its parent's — a
// btrfs subvolume too, which could be: named the same way, to be safe).
func checkReplaceable(out string, st os.FileInfo) error {
	if st.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("--out %s is read-only; refusing to replace it", out)
	}
	if mountpoint.Is(out, st) {
		return fmt.Errorf("--out %s is a mount point, which cannot be replaced by another directory; name a directory inside it (e.g. --out %s)", out, filepath.Join(out, "hits"))
	}
	return nil
}
