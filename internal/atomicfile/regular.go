package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// NotRegularError is the refusal of a name that is not a regular file
// (by OpenRegular, OpenToRead and ReadRegular).
type NotRegularError struct {
	Path string
	Kind string // Kind of what is there ("a symbolic link", "being replaced")
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, e.Kind)
}

// OpenRegular opens path with flag (O_CREATE aside, no O_TRUNC) when it
// is a regular file, and refuses anything else there with a
// *NotRegularError before opening it: through a symbolic link a writer
// would write wherever it leads, and opening a named pipe waits forever.
// The file opened is checked to be the one looked at, so a link or a pipe
// put in its place meanwhile is refused too (a pipe is opened without
// waiting), before anything is read or written:
// portable where O_NOFOLLOW is not (Windows). With O_CREATE, a missing
// file is created exclusively with perm (before the umask), which fails on
// any name made meanwhile (a link, even a dangling one), and is looked at
// again; without it, a missing file is an error that errors.Is takes for
// fs.ErrNotExist.
func OpenRegular(path string, flag int, perm os.FileMode) (*os.File, error) {
	create := flag&os.O_CREATE != 0
	flag &^= os.O_CREATE
	for attempt := 1; ; attempt++ {
		st, err := os.Lstat(path)
		if create && errors.Is(err, fs.ErrNotExist) {
			f, err := os.OpenFile(path, flag|os.O_CREATE|os.O_EXCL, perm)
			if errors.Is(err, fs.ErrExist) && attempt < 10 {
				continue // made by another process meanwhile
			}
			return f, err
		}
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, &NotRegularError{Path: path, Kind: Kind(st.Mode())}
		}
		f, err := os.OpenFile(path, flag|openNonblock, 0)
		if err != nil {
			return nil, err
		}
		// (Its kind too: a file removed frees its inode number, which the
		// pipe put in its place can take, and then the two are "the same".)
		if opened, err := f.Stat(); err != nil || !os.SameFile(st, opened) || !opened.Mode().IsRegular() {
			f.Close()
			if attempt < 10 {
				continue // replaced meanwhile: look at what is there now
			}
			return nil, &NotRegularError{Path: path, Kind: "being replaced again and again"}
		}
		return f, nil
	}
}

// OpenToRead opens the file at path for reading, following links, when it
// is a regular file; anything else is a *NotRegularError, found without
// waiting (a named pipe is opened without waiting for a writer, then
// refused by what the open file is, so none can be swapped in between).
func OpenToRead(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Kind: Kind(st.Mode())}
	}
	return f, nil
}

// TooLargeError is ReadAtMost's refusal of more than Limit bytes.
type TooLargeError struct {
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("over %d bytes", e.Limit)
}

// ReadAtMost reads r to its end when that is at most limit bytes, and
// otherwise returns a *TooLargeError having read limit+1: a small record
// replaced by a huge file (or /dev/zero through a link) must not fill
// memory before it is found out.
func ReadAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = &TooLargeError{Limit: limit}
	}
	return b, err
}

// ReadRegular reads the file at path as OpenToRead opens it, if it holds
// at most limit bytes: a larger one is a *TooLargeError, found by its size
// before any of it is read (or, grown meanwhile, by ReadAtMost).
func ReadRegular(path string, limit int64) ([]byte, error) {
	f, err := OpenToRead(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readOpen(f, path, limit)
}

// readOpen is ReadRegular of the file f, open at path.
func readOpen(f *os.File, path string, limit int64) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var b []byte
	if st.Size() > limit {
		err = &TooLargeError{Limit: limit}
	} else {
		b, err = ReadAtMost(f, limit)
	}
	if tl := (*TooLargeError)(nil); errors.As(err, &tl) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, err
}
