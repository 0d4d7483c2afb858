package madedirs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
)

// MkdirAll is os.MkdirAll (mode 0755) that also returns the topmost
// directory of dir's path it made: dir itself, one above it, or "" when
// dir existed. The directories it made are synced into their parents, so
// that what is written in dir after it does not outlive a power loss
// that takes dir away.
//
// A symbolic link on the way that leads nowhere is named as one: the
// system's "mkdir DIR: file exists" said nothing of it.
func MkdirAll(dir string) (top string, err error) {
	top = missingTop(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		if link, why := danglingLink(dir); link != "" && errors.Is(err, fs.ErrExist) {
			to, _ := os.Readlink(link)
			return top, fmt.Errorf("mkdir %s: %s is a symbolic link that leads nowhere (to %s: %v): point it at a directory, or remove it", dir, link, to, why)
		}
		return top, err
	}
	if top != "" {
		for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
			atomicfile.SyncDir(filepath.Dir(d))
			if d == filepath.Clean(top) || filepath.Dir(d) == d {
				break
			}
		}
	}
	return top, nil
}

// danglingLink is the deepest directory of dir's path that is a symbolic
// link leading nowhere (to nothing, or round a loop of links), and why
// following it fails; "" where none is.
func danglingLink(dir string) (string, error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if st, err := os.Lstat(d); err == nil && st.Mode()&fs.ModeSymlink != 0 {
			if _, err := os.Stat(d); err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				return d, err
			}
		}
		if filepath.Dir(d) == d {
			return "", nil
		}
	}
}

// missingTop is the topmost directory of dir's path that does not exist,
// or "" when dir exists.
func missingTop(dir string) string {
	top := ""
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			return top
		}
		top = d
		if filepath.Dir(d) == d {
			return top
		}
	}
}

// Existing is the deepest directory of dir's path that exists (dir itself
// when it does): where a file system's free space is read for a directory
// that is yet to be made.
func Existing(dir string) string {
	if top := missingTop(dir); top != "" {
		return filepath.Dir(top)
	}
	return dir
}

// Remove removes dir and the directories above it up to top, as long as
// each is empty (os.Remove refuses one that holds anything: the walk stops
// there). A top of "", or one that is not dir or above it, removes nothing.
func Remove(dir, top string) {
	if top == "" {
		return
	}
	if rel, err := filepath.Rel(top, dir); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return
	}
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if os.Remove(d) != nil || d == filepath.Clean(top) || filepath.Dir(d) == d {
			return
		}
	}
}
