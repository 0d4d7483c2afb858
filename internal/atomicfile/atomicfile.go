package atomicfile

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/internal/errwriter"
	"github.com/dinoclip/dinoclip/internal/flock"
)

// A temporary of a file or directory named BASE is named ".BASE.tmp-N",
// N decimal digits chosen at random: hidden, and told from every name a
// user would choose by TempOf, so that sweeping leftovers never takes a
// user's file for one.
const tempMark = ".tmp-"

// tempName is a fresh temporary name for base.
func tempName(base string) string {
	return "." + TempBase(base) + tempMark + strconv.FormatUint(uint64(rand.Uint32()), 10)
}

// maxTempBase is the longest base a temporary name holds whole: with the
// dot, the mark and 10 digits it is the 255 bytes a name may have on
// common filesystems (NAME_MAX).
const maxTempBase = 255 - 1 - len(tempMark) - 10

// TempBase is the base that base's temporaries are named by, which TempOf
// returns: base itself, or for a name too long to take the temporary's
// additions (of 240 to 255 bytes, a name the system allows), its start
// and a hash of the whole (".BASESTART~1a2b3c4d.tmp-N"), so that the
// temporary can be made, and known as base's.
func TempBase(base string) string {
	if len(base) <= maxTempBase {
		return base
	}
	sum := sha256.Sum256([]byte(base))
	cut := maxTempBase - 9
	for cut > 0 && !utf8.RuneStart(base[cut]) {
		cut-- // (whole characters, for the messages that name it)
	}
	return base[:cut] + "~" + hex.EncodeToString(sum[:4])
}

// TempPath is a fresh temporary name for base in dir, for a rename that
// moves something aside (it is not made: a rename onto it fails should
// another take it first).
func TempPath(dir, base string) string { return filepath.Join(dir, tempName(base)) }

// TempOf is the name base whose temporary name is (".out.npy.tmp-123":
// "out.npy"; TempBase of it for a name of over 239 bytes), and whether
// name is one.
func TempOf(name string) (base string, ok bool) {
	i := strings.LastIndex(name, tempMark)
	if i < 2 || name[0] != '.' {
		return "", false
	}
	digits := name[i+len(tempMark):]
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	return name[1:i], true
}

// makeTemp makes a fresh temporary for base in dir with make (which must
// fail with fs.ErrExist when the name is taken), and returns its path.
func makeTemp(dir, base string, make func(path string) error) (string, error) {
	for try := 0; ; try++ {
		path := TempPath(dir, base)
		err := make(path)
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
				return path, missingDirError{filepath.Clean(dir)}
			}
		}
		if err == nil || !errors.Is(err, fs.ErrExist) || try == 10000 {
			return path, err
		}
	}
}

// missingDirError is the error of a file written into a directory that
// does not exist: it names the directory, not the temporary the user never
// asked for. errors.Is takes it for fs.ErrNotExist.
type missingDirError struct{ dir string }

func (e missingDirError) Error() string { return "the directory " + e.dir + " does not exist" }
func (e missingDirError) Unwrap() error { return fs.ErrNotExist }

// Write creates path with what write writes, atomically. An error write
// returns of its own (a bad input it copies, a cancelled context) comes
// back as it is; one of writing the file, "write PATH: ...". A new file gets
// mode 0666 less the umask, as a plain create does; a replaced one keeps
// its mode. A path that is a symbolic link is followed: the file it leads
// to is written and the link kept. An existing destination that is not a
// regular file (a device such as /dev/null, a directory, a socket) or that
// is read-only is refused, since the rename would replace it by a plain
// file.
func Write(path string, write func(io.Writer) error) (err error) {
	if path, err = Destination(path); err != nil {
		return err
	}
	return writeAt(path, write)
}

// Replace is Write of the name path itself: a symbolic link there is
// replaced by the new file, never followed, and a directory there is
// refused. For the files of a directory a program holds locked and owns
// (an index's), where a link planted among them while it writes would
// take the write to a file elsewhere.
func Replace(path string, write func(io.Writer) error) error {
	if err := notDir(path); err != nil {
		return err
	}
	return writeAt(path, write)
}

// notDir refuses a path to replace that is a directory.
func notDir(path string) error {
	if st, err := os.Lstat(path); err == nil && st.IsDir() {
		return fmt.Errorf("write %s: %s is a directory", path, path)
	}
	return nil
}

// ReplaceBytes is Replace for data already in memory.
func ReplaceBytes(path string, data []byte) error {
	return ReplaceAllBytes([]string{path}, [][]byte{data})
}

// ReplaceAllBytes is ReplaceBytes of files that belong together (a
// report and its table), data[i] at paths[i]: each is written whole under
// its temporary name before any is renamed into place, so that a failure
// to write one (a full disk) leaves the old files all as they were, never
// some of a new run beside some of an old one; only a process ending
// between the renames, a moment, does.
func ReplaceAllBytes(paths []string, data [][]byte) error {
	var written []*pendingFile
	defer func() {
		for _, p := range written {
			p.abort()
		}
	}()
	for i, path := range paths {
		if err := notDir(path); err != nil {
			return err
		}
		p, err := prepareAt(path, func(w io.Writer) error { _, err := w.Write(data[i]); return err })
		if err != nil {
			return err
		}
		written = append(written, p)
	}
	for len(written) > 0 {
		p := written[0]
		written = written[1:]
		if err := p.commit(); err != nil {
			return err
		}
	}
	return nil
}

// writeAt is Write once path is the name to replace.
func writeAt(path string, write func(io.Writer) error) error {
	p, err := prepareAt(path, write)
	if err != nil {
		return err
	}
	return p.commit()
}

// pendingFile is a file written whole under its temporary name tmp, to be
// renamed to path (commit), or removed (abort).
type pendingFile struct {
	tmp, path, dir string
	forget         func() // (stops its removal at the process's end)
}

// commit renames the file into place.
func (p *pendingFile) commit() error {
	p.forget() // (before the rename: a process ending at once then leaves tmp, or the new file, never removes it)
	if err := os.Rename(p.tmp, p.path); err != nil {
		os.Remove(p.tmp)
		return fmt.Errorf("write %s: %w", p.path, err)
	}
	SyncDir(p.dir)
	return nil
}

// abort removes the file.
func (p *pendingFile) abort() {
	os.Remove(p.tmp)
	p.forget()
}

// prepareAt writes what write writes to a temporary file beside path,
// synced and closed, for commit to rename into path.
func prepareAt(path string, write func(io.Writer) error) (_ *pendingFile, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	var f *os.File
	tmp, forget, err := makeTempRemovedOnExit(dir, base, func(p string) (err error) {
		f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	flock.TryLock(f, true) // until f is closed; where the system has no locks, RemoveStale keeps it
	closed, ownErr := false, false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			os.Remove(tmp)
			forget()
			// (A failure of write's own, such as a bad input it was
			// copying, is its own: "write OUT: IN: row 7 is NaN" blamed
			// the output.)
			if !ownErr {
				err = fmt.Errorf("write %s: %w", path, err)
			}
		}
	}()
	fw := &errwriter.Writer{W: f}
	bw := bufio.NewWriterSize(fw, 1<<20)
	if err = write(bw); err != nil {
		ownErr = fw.Err == nil
		return nil, err
	}
	if err = bw.Flush(); err != nil {
		return nil, err
	}
	if st, serr := os.Lstat(path); serr == nil && st.Mode().IsRegular() { // (what a link leads to is not replaced)
		if err = f.Chmod(st.Mode().Perm()); err != nil {
			return nil, err
		}
	}
	if err = f.Sync(); err != nil {
		return nil, err
	}
	closed = true
	if err = f.Close(); err != nil {
		return nil, err
	}
	return &pendingFile{tmp: tmp, path: path, dir: dir, forget: forget}, nil
}

// Destination is the file Write replaces for path: path, or where its
// symbolic links lead (a dangling one: the file it would lead to), checked
// to be a writable regular file if it exists. Its directory is resolved
// as the system resolves it: a ".." after a symbolic link leads out of
// where the link leads, not back to where the link is.
//
// A path the system would not create a file at is refused with the
// system's reason, where resolving it would clean it into another: one
// ending in a separator, "." or ".." names a directory ("x.npy/" and
// "x.npy/." replaced x.npy), and a directory part that is a file
// ("x.npy/../y") or, with a "..", missing ("NEW/../y") is none to create
// in.
func Destination(path string) (string, error) {
	for hops := 0; ; hops++ {
		if err := creatable(path); err != nil {
			return "", err
		}
		path = ResolveDir(path)
		st, err := os.Lstat(path)
		if err != nil {
			return path, nil // created (or the create reports why not)
		}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			if hops == 40 {
				return "", fmt.Errorf("write %s: too many levels of symbolic links", path)
			}
			// Where it leads, followed by the system: /dev/stdout's link
			// leads to a pipe by a name ("pipe:[N]") that is no path.
			if end, err := os.Stat(path); err == nil && !end.Mode().IsRegular() {
				return "", fmt.Errorf("write %s: it leads to %s, not a regular file; refusing to replace it", path, Kind(end.Mode()))
			}
			target, err := os.Readlink(path)
			if err != nil {
				return "", fmt.Errorf("write %s: %w", path, err)
			}
			if !filepath.IsAbs(target) {
				// Relative to the link's directory (resolved: path's is),
				// its own links and ".." resolved by ResolveDir, not by
				// filepath.Join, which would drop "sub/.." without
				// following sub.
				target = filepath.Dir(path) + string(filepath.Separator) + target
			}
			path = target
		case !st.Mode().IsRegular():
			return "", fmt.Errorf("write %s: it is %s, not a regular file; refusing to replace it", path, Kind(st.Mode()))
		case st.Mode().Perm()&0o200 == 0:
			return "", fmt.Errorf("write %s: the file is read-only; refusing to replace it", path)
		default:
			return path, nil
		}
	}
}

// maxNameBytes is the longest file name the usual file systems take
// (NAME_MAX: ext4, XFS, btrfs, tmpfs; APFS and NTFS count 255 characters).
const maxNameBytes = 255

// creatable refuses a path the system would create no file at (see
// Destination).
func creatable(path string) error {
	seps := `/` + string(filepath.Separator)
	i := strings.LastIndexAny(path, seps)
	if strings.HasSuffix(path, "/") || strings.HasSuffix(path, string(filepath.Separator)) || path[i+1:] == "." || path[i+1:] == ".." {
		return fmt.Errorf("write %s: the name is a directory's; want the path of a file", path)
	}
	// (The rename into place would refuse it, after all the work.)
	if n := len(path[i+1:]); n > maxNameBytes {
		return fmt.Errorf("write %s: the file's name is %d bytes long, more than the %d a name may have", path, n, maxNameBytes)
	}
	if i <= 0 {
		return nil // in the working directory, or in the root
	}
	dir := path[:i]
	st, err := os.Stat(dir)
	switch {
	case err == nil && !st.IsDir():
		return fmt.Errorf("write %s: %s is not a directory", path, dir)
	case errors.Is(err, fs.ErrNotExist):
		// Missing: the create reports it (or a caller makes it first),
		// unless a ".." comes after the missing part, which cleaning
		// would take away with it.
		if _, err := resolveDotDot(dir); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	case err != nil:
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ResolveDir is path with its directory part resolved as the system
// resolves it (filepath.EvalSymlinks follows each link before it applies
// the ".." after it), the last element kept as it is. Of a directory that
// does not exist yet, the deepest part that does is resolved, and the
// rest applied to it, as mkdir -p would make it.
func ResolveDir(path string) string {
	i := strings.LastIndexAny(path, `/`+string(filepath.Separator))
	if i < 0 {
		return path
	}
	return filepath.Join(resolvePath(path[:i+1]), path[i+1:])
}

// resolvePath is path resolved as far as it exists (see ResolveDir).
func resolvePath(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	trimmed := strings.TrimRight(path, `/`+string(filepath.Separator))
	i := strings.LastIndexAny(trimmed, `/`+string(filepath.Separator))
	if trimmed == "" || i < 0 {
		return path
	}
	return filepath.Join(resolvePath(trimmed[:i+1]), trimmed[i+1:])
}

// ResolveDotDot is path with its ".." elements taken as the system takes
// them: the part up to the last ".." is resolved (filepath.EvalSymlinks),
// so that LINK/../x is x beside where LINK leads, and the rest kept as
// written. Joining names to a user's path (filepath.Join, Abs, Clean)
// would take LINK/.. away as text and name another file. A path without
// "..", or one whose part up to the last ".." does not resolve, is
// returned as it is: the system resolves the rest when it opens it.
func ResolveDotDot(path string) string {
	resolved, _ := resolveDotDot(path)
	return resolved
}

// ResolveDotDotOut is ResolveDotDot for a path to be made (an output
// directory): one whose part up to a ".." does not exist is an error, as
// the system would give, where MkdirAll would make that part (NEW/../x
// made NEW).
func ResolveDotDotOut(path string) (string, error) {
	return resolveDotDot(path)
}

func resolveDotDot(path string) (string, error) {
	end := -1
	for i := 0; i < len(path); {
		j := strings.IndexAny(path[i:], `/`+string(filepath.Separator))
		elem := path[i:]
		if j >= 0 {
			elem = path[i : i+j]
		}
		if elem == ".." {
			end = i + 2
		}
		if j < 0 {
			break
		}
		i += j + 1
	}
	if end < 0 {
		return path, nil
	}
	real, err := filepath.EvalSymlinks(path[:end])
	if err != nil {
		return path, err
	}
	return filepath.Join(real, path[end:]), nil
}

// RealPath is path as the system resolves it, made absolute: its symbolic
// links followed in turn (the working directory's too), so that a ".."
// after a link leads out of where the link leads (filepath.Abs would take
// link/.. away as text).
func RealPath(path string) (string, error) {
	switch {
	case filepath.IsAbs(path):
	case filepath.VolumeName(path) != "" || strings.HasPrefix(path, `/`) || strings.HasPrefix(path, string(filepath.Separator)):
		// Windows: rooted on the current drive (\data) or relative to a
		// drive's own directory (C:data), which only Abs knows.
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", err
		}
		path = abs
	default:
		// Under the working directory as named (a link, perhaps), which
		// EvalSymlinks then resolves too; not filepath.Join, which cleans.
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		path = wd + string(filepath.Separator) + path
	}
	return filepath.EvalSymlinks(path)
}

// AbsPath is path made absolute (cleaned), for a record that must lead to
// the file from any working directory; path itself when that fails, and
// "" stays "".
func AbsPath(path string) string {
	if path == "" {
		return ""
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// RealOrAbs is RealPath(path), for a record that must name a file after a
// link to it (a run's best or last) moves on; AbsPath(path) when it cannot
// be resolved.
func RealOrAbs(path string) string {
	if real, err := RealPath(path); err == nil {
		return real
	}
	return AbsPath(path)
}

// SameFile reports whether a and b name the same file (or directory),
// links followed; false when either cannot be read.
func SameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// IsLink reports whether path is a symbolic link (leading anywhere).
func IsLink(path string) bool {
	st, err := os.Lstat(path)
	return err == nil && st.Mode()&os.ModeSymlink != 0
}

// Kind names the type of a file, for an error ("a directory").
func Kind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// WriteBytes is Write for data already in memory.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// SyncDir persists the entries of dir (a rename into it, say). Some
// filesystems refuse to fsync a directory; the data is already safe then,
// so that is not an error.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// MkdirTemp makes a temporary directory for a directory named base in dir
// (mode 0777 less the umask, as a plain mkdir gives) and holds its lock
// until release is called: while it is held, RemoveStale leaves the
// directory alone.
func MkdirTemp(dir, base string) (path string, release func(), err error) {
	path, err = makeTemp(dir, base, func(p string) error { return os.Mkdir(p, 0o777) })
	if err != nil {
		return "", nil, err
	}
	return path, lockTempDir(path), nil
}

// MkdirTempRemovedOnExit is MkdirTemp for a directory whose contents are
// nobody's until it is renamed into place (a checkpoint being saved): a
// process ended at once (RemoveUnfinished) removes it whole until forget
// is called, which must come before the rename (see
// makeTempRemovedOnExit). A directory whose presence means something (a
// marker that a set is being moved in) must be forgotten before it does:
// a process ended at once must leave it.
func MkdirTempRemovedOnExit(dir, base string) (path string, release, forget func(), err error) {
	path, forget, err = makeTempRemovedOnExit(dir, base, func(p string) error { return os.Mkdir(p, 0o777) })
	if err != nil {
		return "", nil, nil, err
	}
	return path, lockTempDir(path), forget, nil
}

// lockTempDir holds the lock of the temporary directory path, which
// RemoveStale respects, until release is called.
func lockTempDir(path string) (release func()) {
	release, err := flock.LockDir(path)
	if err != nil {
		return func() {} // (not opened: no lock; RemoveStale's age still guards it)
	}
	return release
}

// StaleAge is how long a temporary file or directory must have gone
// unmodified before RemoveStale takes it for a dead writer's: besides the
// lock, it covers the moments a live writer holds none (between creating
// the temporary and locking it, between closing it and renaming it).
const StaleAge = time.Minute

// RemoveStale removes path, a temporary file or directory that Write or a
// MkdirTemp user writes, when its writer has ended without renaming it
// into place (killed, say): nobody holds its lock, and it has gone
// unmodified for StaleAge. A directory is removed only when it holds
// nothing but regular files that holds names (see RemoveDir); with holds
// nil, no directory is. It reports whether it removed path. A system
// without file locks keeps every temporary (removed is false).
func RemoveStale(path string, holds func(name string) bool) (removed bool, err error) {
	return removeStale(path, holds, StaleAge)
}

// removeStale is RemoveStale of a temporary unmodified for age.
func removeStale(path string, holds func(name string) bool, age time.Duration) (removed bool, err error) {
	st, err := os.Lstat(path)
	// Only what a writer makes: a regular file or a directory (opening a
	// named pipe would wait for a writer forever; a link is nobody's).
	if err != nil || age > 0 && time.Since(st.ModTime()) < age || !(st.Mode().IsRegular() || st.IsDir() && holds != nil) {
		return false, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrPermission) {
		// Made under umask 777 (mode 000), which its owner can change.
		mode := os.FileMode(0o600)
		if st.IsDir() {
			mode = 0o700
		}
		if os.Chmod(path, mode) == nil {
			f, err = os.Open(path)
		}
	}
	if err != nil {
		return false, nil
	}
	lockErr := flock.TryLock(f, true)
	f.Close() // (Windows removes no open file; no writer opens a temporary it did not make)
	if lockErr != nil {
		return false, nil // a live writer holds it, or this system has no locks to tell
	}
	if st.IsDir() {
		err = RemoveDir(path, holds)
	} else {
		err = os.Remove(path)
	}
	return err == nil, err
}

// HoldsOnly returns nil when the directory dir holds only regular files
// that holds names, or temporaries of them (what RemoveDir removes); an
// error naming what else it holds, or why it cannot be read, otherwise.
func HoldsOnly(dir string, holds func(name string) bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	return holdsOnly(dir, entries, holds)
}

// holdsOnly is HoldsOnly of dir's entries.
func holdsOnly(dir string, entries []fs.DirEntry, holds func(name string) bool) error {
	for _, e := range entries {
		name := e.Name()
		if base, ok := TempOf(name); ok {
			name = base
		}
		if !e.Type().IsRegular() || !holds(name) {
			return fmt.Errorf("%s holds %s, which no dinoclip writes there; left alone", dir, e.Name())
		}
	}
	return nil
}

// RemoveDir removes the directory dir when it holds only regular files
// that holds names, or temporaries of them (TempOf): what a writer of
// such a directory puts there. Anything else in it (a user's file, a
// directory, a link, a mount) is an error naming it, and nothing is
// removed: it is nobody's to remove. A directory its owner cannot read
// (made under umask 777: mode 000) is made readable to its owner first.
func RemoveDir(dir string, holds func(name string) bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrPermission) && os.Chmod(dir, 0o700) == nil {
		entries, err = os.ReadDir(dir)
	}
	if err != nil {
		return err
	}
	if err := holdsOnly(dir, entries, holds); err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Remove(dir)
}
