package retrieval

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/flock"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/mmapfault"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/strictjson"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
)

// An index is a directory (docs/FORMAT.md, "Search index"):
//
//	INDEX/manifest.json     what the index holds; written after the files it names, atomically
//	INDEX/keys-00000.npy    [rows, dim] unit-norm embeddings, float16 or float32
//	INDEX/ids-00000.npy     [rows] int64 ids of those rows
//	INDEX/images-00000.txt  the image of each row, one per line (when the source had a list)
//	INDEX/.lock             held (flock) by the process appending
//
// Row ids are the rows' positions in the index: shard s holds ids
// first_id, first_id+1, ..., in the order the rows were added.
// IndexMaxShards is the most shards an index may have. A search maps the
// keys file of every shard at once, and Linux's default limit on a
// process's maps (vm.max_map_count, 65530, less the maps kept for the Go
// runtime: internal/mmapfile) leaves room for not many more: an index past
// it could not be opened.
const IndexMaxShards = 60000

const (
	IndexManifestFile = "manifest.json"
	IndexFormat       = "dinoclip-index/1"
	IndexLockFile     = ".lock"
)

// indexFormatPrefix begins the format of every version of the index
// format: a manifest naming it marks an index, of this version or not.
const indexFormatPrefix = "dinoclip-index/"

// IsIndex reports whether dir is a search index, as a command about to
// write a file into dir must judge it: its manifest.json names the index
// format (in its first 4 KiB, where dinoclip writes the format first: a
// damaged manifest still counts), or dinoclip index holds its lock
// (appending, before its first manifest). A manifest.json of another kind
// (a web page's, a data set's), or a .lock that nobody holds, is no mark.
func IsIndex(dir string) bool {
	if f, err := atomicfile.OpenRegular(filepath.Join(dir, IndexManifestFile), os.O_RDONLY, 0); err == nil {
		head := make([]byte, 4096)
		n, _ := io.ReadFull(f, head)
		f.Close()
		if bytes.Contains(head[:n], []byte(`"`+indexFormatPrefix)) {
			return true
		}
	}
	return indexAppending(dir)
}

// IsUnfinishedIndex reports whether dir holds what a first append that is
// running, or was killed, leaves: no manifest, and the index's lock held
// or its lock file beside shard files or their temporaries.
func IsUnfinishedIndex(dir string) bool {
	if _, err := os.Lstat(filepath.Join(dir, IndexManifestFile)); err == nil {
		return false
	}
	if indexAppending(dir) {
		return true
	}
	if _, err := os.Lstat(filepath.Join(dir, IndexLockFile)); err != nil {
		return false
	}
	entries, _ := os.ReadDir(dir)
	return slices.ContainsFunc(entries, func(e os.DirEntry) bool {
		n := e.Name()
		if b, ok := atomicfile.TempOf(n); ok {
			n = b
		}
		return isShardFile(n)
	})
}

// indexAppending reports whether a dinoclip index holds the lock of an
// index in dir.
func indexAppending(dir string) bool {
	f, err := atomicfile.OpenRegular(filepath.Join(dir, IndexLockFile), os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(flock.TryLock(f, false), flock.ErrLocked)
}

// shardName and imagesName match the file names an index may refer to,
// so a tampered manifest cannot make a search open files outside the
// index.
var (
	shardName  = regexp.MustCompile(`^(keys|ids)-[0-9]{5,}\.npy$`)
	imagesName = regexp.MustCompile(`^images-[0-9]{5,}\.txt$`)
)

// fileNumber is the number in the name of a shard's file (shardName,
// imagesName): "00003" of keys-00003.npy.
func fileNumber(name string) string {
	_, rest, _ := strings.Cut(name, "-")
	n, _, _ := strings.Cut(rest, ".")
	return n
}

// isShardFile reports whether name is that of a shard's file (keys, ids or
// images list).
func isShardFile(name string) bool {
	return shardName.MatchString(name) || imagesName.MatchString(name)
}

// IndexManifest is manifest.json.
type IndexManifest struct {
	Format string       `json:"format"`
	Dim    int          `json:"dim"`
	DType  string       `json:"dtype"` // "float16" or "float32"
	Rows   int64        `json:"rows"`
	Model  IndexModel   `json:"model"`
	Shards []IndexShard `json:"shards"`
}

// IndexModel identifies the model whose projections an index holds.
type IndexModel struct {
	// SHA256 is the hex SHA-256 of the model's parameters as float32
	// little-endian in state_dict order, preceded by its config JSON: equal
	// for every copy of the same weights, whatever file or metadata.
	SHA256 string          `json:"sha256"`
	Path   string          `json:"path"` // the model file when the index was created
	Config json.RawMessage `json:"config"`
	// The models of the data it was trained on, as its file records them
	// (none in an index written before they were recorded): a search
	// warns of queries from another CLIP model.
	dataset.Encoders
}

// IndexShard is one appended source file.
type IndexShard struct {
	Keys    string      `json:"keys"`
	IDs     string      `json:"ids"`
	Rows    int64       `json:"rows"`
	FirstID int64       `json:"first_id"`
	Source  IndexSource `json:"source"`
	// KeysSample is keysSample of the keys file's rows, hex: an index
	// written before it was recorded has none, and is not checked.
	KeysSample string `json:"keys_sample,omitempty"`
	// Images names the file listing the image of each row, one per line
	// (a copy of the list beside the source, see Append); "" if none.
	Images string `json:"images,omitempty"`
	// ImagesSHA256 is the hex SHA-256 of the Images file, so that a list
	// swapped with another shard's or edited names no wrong image: an
	// index written before it was recorded has none, and is not checked.
	ImagesSHA256 string `json:"images_sha256,omitempty"`
}

// Sampling the keys: keysSampleWindows windows of keysSampleWindow bytes
// spread evenly over the rows, the first at the start and the last at the
// end (the whole data when it is smaller). 64 KiB read of an index that
// may be gigabytes, so opening stays instant, yet a keys file swapped with
// another shard's of the same shape, or rescaled or rewritten as a whole,
// fails the check.
const (
	keysSampleWindows = 16
	keysSampleWindow  = 4096
)

// keysSample is the SHA-256 of the data's length (8 bytes, little-endian)
// and its sampled windows, in order, hex.
func keysSample(data []byte) string {
	h := sha256.New()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(data)))
	h.Write(n[:])
	if len(data) <= keysSampleWindows*keysSampleWindow {
		h.Write(data)
	} else {
		span := len(data) - keysSampleWindow
		for i := 0; i < keysSampleWindows; i++ {
			off := int(int64(i) * int64(span) / (keysSampleWindows - 1))
			h.Write(data[off : off+keysSampleWindow])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// IndexSource is the features file a shard was projected from. A source
// with the same path, size and rows is taken as already indexed.
type IndexSource struct {
	Path string `json:"path"` // absolute, symbolic links resolved
	Size int64  `json:"size"`
	Rows int64  `json:"rows"`
	// Sample is DataSample of the file's data (the bytes after its .npy
	// header), so that a file rewritten in place with the same size is
	// seen as changed; a source recorded without one is not checked.
	Sample string `json:"sample,omitempty"`
}

// CheckSourcePath refuses a source whose path is not UTF-8: the manifest
// holds text, in which such a path would read back as another (bytes that
// are not UTF-8 become U+FFFD), so the file would not be known again when
// appended anew, and a rewrite of it would go unseen.
func CheckSourcePath(path string) error {
	if !utf8.ValidString(path) {
		return fmt.Errorf("%q: the path is not UTF-8 text, and the index's manifest, which records it to know the file again, holds text: rename it", path)
	}
	return nil
}

// DataSample is the hex SHA-256 of data's length and 16 windows of 4 KiB
// spread over it (all of it when it is at most 64 KiB): what a shard's
// keys_sample and a source's sample record.
func DataSample(data []byte) (sample string, err error) {
	err = mmapfault.Guard(func() { sample = keysSample(data) })
	return sample, err
}

// maxManifestBytes bounds what is read of an index's manifest: a few
// hundred bytes a shard, tens of MB at IndexMaxShards, and a manifest
// replaced by a huge file must not fill memory before it is refused.
const maxManifestBytes = 256 << 20

func readManifest(dir string) (*IndexManifest, error) {
	path := filepath.Join(dir, IndexManifestFile)
	err := plainFile(dir, IndexManifestFile) // (a link would take appends outside the index; a pipe would hang)
	var b []byte
	if err == nil {
		b, err = atomicfile.ReadRegular(path, maxManifestBytes)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if st, serr := os.Stat(dir); serr != nil || !st.IsDir() {
				return nil, fmt.Errorf("index %s: no such directory", dir)
			}
			return nil, fmt.Errorf("index %s: no %s (not an index, or its first append never finished)", dir, IndexManifestFile)
		}
		return nil, fmt.Errorf("index %s: %w", dir, err)
	}
	var m IndexManifest
	if err := strictjson.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("index %s: %s: %w", dir, IndexManifestFile, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("index %s: %s: %w", dir, IndexManifestFile, err)
	}
	return &m, nil
}

// check validates the manifest on its own (the files are checked when
// opened).
func (m *IndexManifest) check() error {
	if m.Format != IndexFormat {
		return fmt.Errorf("format %q, want %q", m.Format, IndexFormat)
	}
	if m.Dim < 1 || m.Dim > maxSearchDim {
		return fmt.Errorf("dim %d, want 1 to %d", m.Dim, maxSearchDim)
	}
	if _, err := indexDType(m.DType); err != nil {
		return err
	}
	if !isSHA256Hex(m.Model.SHA256) {
		return fmt.Errorf("model sha256 %q is not a SHA-256", m.Model.SHA256)
	}
	// The keys are the model's outputs: a config of another width, or of
	// no model that can be built, is an edited manifest, which info would
	// show as the index's model and appends would carry on. (Its widths
	// are integers; a value of another kind is an edit too.)
	var c nn.Config
	if len(m.Model.Config) == 0 {
		return errors.New("no model config (model.config): the index's model is unknown")
	}
	if err := json.Unmarshal(m.Model.Config, &c); err != nil {
		return fmt.Errorf("the model's config: %w", strictjson.Describe(err))
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("the model's config: %w", err)
	}
	if c.OutputDim != m.Dim {
		return fmt.Errorf("the model's config does not give it %d-wide outputs, the index's dim", m.Dim)
	}
	var next int64
	named := map[string]int{} // file name -> the shard naming it
	for i, s := range m.Shards {
		if !shardName.MatchString(s.Keys) || !shardName.MatchString(s.IDs) || !strings.HasPrefix(s.Keys, "keys-") || !strings.HasPrefix(s.IDs, "ids-") {
			return fmt.Errorf("shard %d names files %q and %q, want keys-NNNNN.npy and ids-NNNNN.npy", i, s.Keys, s.IDs)
		}
		if s.Images != "" && !imagesName.MatchString(s.Images) {
			return fmt.Errorf("shard %d names images file %q, want images-NNNNN.txt", i, s.Images)
		}
		for _, f := range []string{s.Keys, s.IDs, s.Images} {
			if j, dup := named[f]; dup && f != "" {
				return fmt.Errorf("shards %d and %d both name %s", j, i, f)
			}
			named[f] = i
		}
		// (An append names a shard's files by one number: a manifest
		// edited to swap two shards' images, or keys, with their hashes
		// would pass every check below, and a search name other photos.)
		if n := fileNumber(s.Keys); fileNumber(s.IDs) != n || s.Images != "" && fileNumber(s.Images) != n {
			files := strings.Join(slices.DeleteFunc([]string{s.Keys, s.IDs, s.Images}, func(f string) bool { return f == "" }), ", ")
			return fmt.Errorf("shard %d names %s: an append names a shard's files by one number, so these pair files of different shards (a manifest edited by hand)", i, files)
		}
		if s.KeysSample != "" && !isSHA256Hex(s.KeysSample) {
			return fmt.Errorf("shard %d: keys_sample %q is not a hex SHA-256", i, s.KeysSample)
		}
		if s.ImagesSHA256 != "" && (s.Images == "" || !isSHA256Hex(s.ImagesSHA256)) {
			return fmt.Errorf("shard %d: images_sha256 %q is not a hex SHA-256 of an images file", i, s.ImagesSHA256)
		}
		if s.Rows < 0 || s.FirstID != next {
			return fmt.Errorf("shard %d: %d rows from id %d, want ids to continue from %d", i, s.Rows, s.FirstID, next)
		}
		if s.Rows > math.MaxInt64-next {
			return fmt.Errorf("shard %d: %d rows from id %d pass the largest id, %d", i, s.Rows, s.FirstID, int64(math.MaxInt64))
		}
		// (A shard is its source's rows, all of them: an append would
		// take a source of other rows for the one indexed.)
		switch {
		case s.Source == IndexSource{}:
			return fmt.Errorf("shard %d: no source (the features file it was indexed from)", i)
		case s.Source.Rows != s.Rows:
			return fmt.Errorf("shard %d: %d rows, but its source %d", i, s.Rows, s.Source.Rows)
		}
		next += s.Rows
	}
	if next != m.Rows {
		return fmt.Errorf("%d rows, but its shards hold %d", m.Rows, next)
	}
	return nil
}

// isSHA256Hex says whether s is a SHA-256 as the index writes it: 64
// lowercase hex digits.
func isSHA256Hex(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

func indexDType(name string) (npy.DType, error) {
	switch name {
	case "float16":
		return npy.Float16, nil
	case "float32":
		return npy.Float32, nil
	}
	return 0, fmt.Errorf("dtype %q, want float16 or float32", name)
}

// Index is an opened index: its manifest and its keys, memory-mapped.
type Index struct {
	Dir      string
	Manifest IndexManifest
	Keys     *Keys // row p has id p
	arrays   []*npy.Array
}

// OpenIndex opens the index in dir read-only. Every shard's files are
// checked against the manifest (shape, dtype, ids), so a truncated,
// swapped or tampered file is an error here rather than a wrong answer.
// Readers need no lock: an append adds files and replaces the manifest
// atomically, and never rewrites a file a manifest refers to.
func OpenIndex(dir string) (*Index, error) {
	dir = atomicfile.ResolveDotDot(dir) // (LINK/.. as the system takes it, before names are joined to it)
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	ix := &Index{Dir: dir, Manifest: *m}
	dt, _ := indexDType(m.DType)
	var segs []KeySegment
	for _, s := range m.Shards {
		a, raw, err := openShard(dir, s, m.Dim, dt)
		if err != nil {
			ix.Close()
			return nil, fmt.Errorf("index %s: %w", dir, err)
		}
		ix.arrays = append(ix.arrays, a)
		segs = append(segs, KeySegment{Name: a.Name(), DType: dt, Rows: int(s.Rows), Data: raw, Mapped: true})
	}
	if ix.Keys, err = NewKeys(m.Dim, segs...); err != nil {
		ix.Close()
		return nil, err
	}
	ix.Keys.MaxNorm = UnitNormLimit
	return ix, nil
}

// openShard maps a shard's keys and checks its ids.
func openShard(dir string, s IndexShard, dim int, dt npy.DType) (*npy.Array, []byte, error) {
	for _, f := range []string{s.Keys, s.IDs} {
		if err := plainFile(dir, f); err != nil {
			return nil, nil, err
		}
	}
	ia, err := npy.Open(filepath.Join(dir, s.IDs))
	if err != nil {
		return nil, nil, err
	}
	if sh := ia.Shape(); len(sh) != 1 || int64(sh[0]) != s.Rows || ia.DType() != npy.Int64 {
		ia.Close()
		return nil, nil, fmt.Errorf("%s: a %v array of %s, the manifest says a [%d] array of int64", s.IDs, sh, ia.DType().Name(), s.Rows)
	}
	offset := int64(ia.Header().DataOffset)
	ia.Close()
	if err := checkIDs(filepath.Join(dir, s.IDs), s.IDs, offset, s.Rows, s.FirstID); err != nil {
		return nil, nil, err
	}
	a, err := npy.Open(filepath.Join(dir, s.Keys))
	if err != nil {
		return nil, nil, err
	}
	if sh := a.Shape(); len(sh) != 2 || int64(sh[0]) != s.Rows || sh[1] != dim || a.DType() != dt {
		a.Close()
		return nil, nil, fmt.Errorf("%s: a %v array of %s, the manifest says a [%d %d] array of %s", s.Keys, sh, a.DType().Name(), s.Rows, dim, dt.Name())
	}
	raw, err := a.RawRows(0, a.Rows())
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	var sample string
	if s.KeysSample != "" {
		if sample, err = DataSample(raw); err != nil { // truncated since it was opened
			a.Close()
			return nil, nil, fmt.Errorf("%s: %w", s.Keys, err)
		}
	}
	if s.KeysSample != "" && sample != s.KeysSample {
		a.Close()
		return nil, nil, fmt.Errorf("%s: its rows are not those the manifest recorded (keys_sample differs): the file was replaced, swapped with another shard's or edited", s.Keys)
	}
	return a, raw, nil
}

// checkIDs reads the rows int64 ids of the .npy file at path (data from
// offset on; name is for messages) and refuses them unless they number
// the rows in order from first. It reads a tile at a time with plain
// reads, not through a mapping: the ids of a shard of ten million rows are
// 80 MB, which a search's memory budget has no room for.
func checkIDs(path, name string, offset, rows, first int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 8*min(rows, idsTile))
	for lo := int64(0); lo < rows; lo += idsTile {
		b := buf[:8*min(idsTile, rows-lo)]
		if _, err := f.ReadAt(b, offset+8*lo); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for i := range len(b) / 8 {
			if id, want := int64(binary.LittleEndian.Uint64(b[8*i:])), first+lo+int64(i); id != want {
				return fmt.Errorf("%s: row %d has id %d, want %d (ids number the rows in order)", name, lo+int64(i), id, want)
			}
		}
	}
	return nil
}

// idsTile is the ids checkIDs reads at a time.
const idsTile = 8192

// plainFile refuses a file of the index that is not a regular file in it:
// index writes only those, and a symbolic link could lead anywhere.
func plainFile(dir, name string) error {
	st, err := os.Lstat(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (an index holds only the plain files dinoclip index writes)", name)
	}
	return nil
}

// Close unmaps the index's files.
func (ix *Index) Close() error {
	var first error
	for _, a := range ix.arrays {
		if err := a.Close(); err != nil && first == nil {
			first = err
		}
	}
	ix.arrays = nil
	return first
}

// IndexWriter appends shards to an index under its lock.
type IndexWriter struct {
	dir      string
	manifest IndexManifest
	dtype    npy.DType
	unlock   func()
	madeTop  string                // the topmost directory AppendIndex made for dir (dir itself, or one above it); "" if none
	sources  map[string]IndexShard // Source's lookup by path, made on first use
	swept    atomicfile.Sweep      // what AppendIndex did with the temporaries it found (Swept)

	// The manifest on disk holds the first committed shards of manifest;
	// the others were appended since (see Append and Commit).
	committed  int
	noManifest bool            // no manifest is on disk yet: this is the index's first append
	used       map[string]bool // the file names of manifest's shards
	lastCommit time.Time       // when the manifest was last written (or the writer opened)
	commitCost time.Duration   // how long that write took
}

// minCommitInterval is the least time between two writes of an append's
// manifest. Each write is of the whole manifest, a line per shard: written
// after every shard, an index of tens of thousands of small features files
// spent most of its time rewriting it (quadratic in the file count). Append
// writes it once this interval, and ten times as long as its last write
// took, have passed; Commit and Close write what is left.
var minCommitInterval = time.Second

// checkIndexDir refuses a directory without a manifest that holds a file
// an index does not write, or shard files without the lock file that a
// first append killed after writing them leaves (one that fails removes
// its shards before its lock): someone else's files of those names.
func checkIndexDir(dir string) error {
	// (Lstat: a manifest that is a link, even one leading nowhere, is
	// readManifest's to refuse.)
	if st, err := os.Lstat(filepath.Join(dir, IndexManifestFile)); !errors.Is(err, os.ErrNotExist) {
		// Another program's manifest.json (no index format in it, and no
		// index's lock beside it) is no damaged index: the directory is
		// that program's.
		if err == nil && st.Mode().IsRegular() && !IsIndex(dir) {
			if _, err := os.Lstat(filepath.Join(dir, IndexLockFile)); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("index %s: the directory holds a %s that is not a dinoclip index's (it names no %s format); refusing to make an index in a directory used for something else", dir, IndexManifestFile, indexFormatPrefix)
			}
		}
		return nil
	}
	entries, _ := os.ReadDir(dir)
	shard, locked := "", false
	for _, e := range entries {
		switch n := e.Name(); {
		case n == IndexLockFile:
			locked = true
		case isShardFile(n):
			shard = n
		case !isTemp(n):
			return fmt.Errorf("index %s: the directory holds %s but no %s; refusing to make an index in a directory used for something else", dir, n, IndexManifestFile)
		}
	}
	if shard != "" && !locked {
		return fmt.Errorf("index %s: the directory holds %s but neither %s nor the %s an interrupted dinoclip index leaves; refusing to write over it (if an interrupted index made it and its %s was removed since, remove the directory and index again)", dir, shard, IndexManifestFile, IndexLockFile, IndexLockFile)
	}
	return nil
}

// AppendIndex opens the index in dir for appending, creating it (and dir)
// if it has no manifest yet, with the given model, width and dtype. It
// takes the index's locks, or fails at once if another process holds
// them: the directory's own (where the system locks directories), then
// the lock file's, which is what IsIndex sees of an append. The lock file
// alone would let a second appender in once it was removed as a stale
// one: two appends then wrote the same shard names.
// An existing index must be whole (its files pass OpenIndex's checks) and
// have been built by the same model (SHA-256) with the same width; its
// dtype is kept (dtype only applies to a new index). Temporary files left
// by an append that was killed are removed (Swept says which).
func AppendIndex(dir string, model IndexModel, dim int, dtype string) (_ *IndexWriter, err error) {
	dir = atomicfile.ResolveDotDot(dir) // (LINK/.. as the system takes it, before names are joined to it)
	if _, err := indexDType(dtype); err != nil {
		return nil, fmt.Errorf("index %s: %w", dir, err)
	}
	// A directory used for something else is refused before the lock
	// file is made in it (and again under the lock, against a race).
	if err := checkIndexDir(dir); err != nil {
		return nil, err
	}
	w := &IndexWriter{}
	given := dir
	for attempt := 1; ; attempt++ {
		top, err := madedirs.MkdirAll(given)
		if err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		// The directory itself, resolved once: every file of the append
		// goes where the lock is taken, though a link that named it
		// (current -> idx-v2) is pointed elsewhere meanwhile.
		if dir, err = atomicfile.RealPath(given); err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		if top != "" && w.madeTop == "" {
			w.madeTop = top
			if real, err := atomicfile.RealPath(top); err == nil {
				w.madeTop = real
			}
		}
		releaseDir, err := flock.LockDir(dir)
		if errors.Is(err, flock.ErrLocked) {
			return nil, fmt.Errorf("index %s: another process is writing into the directory (a dinoclip appending to the index, or another command); wait for it to finish", dir)
		}
		if err == nil {
			var unlockFile func()
			unlockFile, err = lockDir(filepath.Join(dir, IndexLockFile))
			if err != nil {
				releaseDir()
			} else {
				w.unlock = func() { unlockFile(); releaseDir() }
			}
		}
		if errors.Is(err, fs.ErrNotExist) && attempt < 10 {
			continue // removed by another process whose first append failed (see Close): make it again
		}
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", dir, err)
		}
		break
	}
	w.dir = dir
	defer func() {
		if err != nil {
			w.release()
		}
	}()
	if _, statErr := os.Lstat(filepath.Join(dir, IndexManifestFile)); errors.Is(statErr, os.ErrNotExist) {
		if err := checkIndexDir(dir); err != nil {
			return nil, err
		}
		w.manifest = IndexManifest{Format: IndexFormat, Dim: dim, DType: dtype, Model: model, Shards: []IndexShard{}}
		w.noManifest = true
	} else {
		m, err := readManifest(dir)
		if err != nil {
			return nil, err
		}
		// Append only to an index that a search can open: its files as
		// OpenIndex checks them (shapes, dtypes, ids).
		dt, _ := indexDType(m.DType)
		for _, s := range m.Shards {
			a, _, err := openShard(dir, s, m.Dim, dt)
			if err == nil {
				a.Close()
				err = checkShardImages(dir, s)
			}
			if err != nil {
				return nil, fmt.Errorf("index %s: %w; it is damaged: build a new index", dir, err)
			}
		}
		if m.Model.SHA256 != model.SHA256 {
			return nil, fmt.Errorf("index %s was built by another model (%s, sha256 %s…), not %s (sha256 %s…); write this model's projections to a new index",
				dir, m.Model.Path, m.Model.SHA256[:12], model.Path, model.SHA256[:min(12, len(model.SHA256))])
		}
		if m.Dim != dim {
			return nil, fmt.Errorf("index %s holds %d-wide rows, the model writes %d", dir, m.Dim, dim)
		}
		w.manifest = *m
		// The same weights: an index from before the models were recorded
		// (or made from a copy that does not name them) takes the names
		// this file of them gives, with the next shard it writes.
		w.manifest.Model.Encoders = m.Model.Encoders.Or(model.Encoders)
	}
	w.dtype, _ = indexDType(w.manifest.DType)
	w.committed = len(w.manifest.Shards)
	w.used = map[string]bool{}
	for _, s := range w.manifest.Shards {
		w.use(s)
	}
	w.swept = sweepTemps(dir)
	w.swept.Merge(w.sweepUnlisted())
	w.lastCommit = time.Now()
	return w, nil
}

// CheckShardCount refuses an append of files features files (a shard
// each) that would take the index past IndexMaxShards.
func (w *IndexWriter) CheckShardCount(files int) error {
	if n := len(w.manifest.Shards) + files; n > IndexMaxShards {
		return fmt.Errorf("index %s would hold %d shards (one per features file), more than the %d a search can open (it maps each at once): index fewer, larger features files (concatenate them)", w.dir, n, IndexMaxShards)
	}
	return nil
}

// use records the names of the files of shard s as taken.
func (w *IndexWriter) use(s IndexShard) {
	w.used[s.Keys], w.used[s.IDs], w.used[s.Images] = true, true, true
}

// sweepUnlisted removes the shard files the manifest does not name: those
// of shards an append killed before its manifest named them wrote (whole
// files; the manifest is written at intervals, see minCommitInterval). No
// one else writes them while this writer holds the index.
func (w *IndexWriter) sweepUnlisted() atomicfile.Sweep {
	var s atomicfile.Sweep
	entries, _ := os.ReadDir(w.dir)
	for _, e := range entries {
		if n := e.Name(); isShardFile(n) && !w.used[n] && e.Type().IsRegular() {
			p := filepath.Join(w.dir, n)
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.Failed = append(s.Failed, &fs.PathError{Op: "remove", Path: p, Err: err})
			} else {
				s.Removed = append(s.Removed, p)
			}
		}
	}
	return s
}

// isTemp matches atomicfile's temporary names.
func isTemp(name string) bool { _, ok := atomicfile.TempOf(name); return ok }

// sweepTemps removes the temporaries of the index directory dir that
// appends killed before their renames left: those of the index's own
// files (shards, image lists, the manifest) however new, as no other
// process writes them while this one holds the index; others' once stale
// (atomicfile.SweepStale: their writer may be at work, putting a file
// there before the directory became an index).
func sweepTemps(dir string) atomicfile.Sweep {
	entries, _ := os.ReadDir(dir)
	var own []string
	for _, e := range entries {
		if b, ok := atomicfile.TempOf(e.Name()); ok && (b == IndexManifestFile || isShardFile(b)) {
			own = append(own, b)
		}
	}
	s := atomicfile.SweepOwn(dir, own...)
	s.Merge(atomicfile.SweepStaleExcept(dir, own...))
	return s
}

// Swept is what AppendIndex did with the temporaries in the index's
// directory, for its caller to report (atomicfile.Sweep.Report).
func (w *IndexWriter) Swept() atomicfile.Sweep { return w.swept }

// Manifest returns a copy of the manifest as it stands.
func (w *IndexWriter) Manifest() IndexManifest {
	m := w.manifest
	m.Shards = append([]IndexShard(nil), m.Shards...)
	return m
}

// DType is the dtype the index stores.
func (w *IndexWriter) DType() string { return w.manifest.DType }

// Source returns the source recorded under path (absolute, symbolic links
// resolved, as sources are recorded), if the index holds a shard of it.
// The caller compares size and rows: the same, and the file is indexed
// already; different, and it changed since. A recorded path is not
// resolved again: a link that leads elsewhere now says nothing of what was
// indexed.
func (w *IndexWriter) Source(path string) (IndexSource, bool) {
	sh, ok := w.shardOf(path)
	return sh.Source, ok
}

// shardOf is the shard of the source recorded under path, if any.
func (w *IndexWriter) shardOf(path string) (IndexShard, bool) {
	if w.sources == nil {
		w.sources = map[string]IndexShard{}
		for _, s := range w.manifest.Shards {
			w.sources[s.Source.Path] = s
		}
	}
	sh, ok := w.sources[path]
	return sh, ok
}

// CheckSourceImages refuses images, the list of the images of the rows of
// the source recorded under path, where it is not the list the index
// copied with it (its images_sha256; the index took none): appended again,
// the source is skipped as indexed, and the index would go on naming the
// images of the old list (photos moved, and their features extracted
// again, are the same features under new names). An index written before
// lists were hashed is not checked.
func (w *IndexWriter) CheckSourceImages(path, images string, rows int64) error {
	sh, ok := w.shardOf(path)
	if !ok || rows == 0 { // (rows of no images need none named)
		return nil
	}
	if sh.Images == "" {
		return fmt.Errorf("%s was indexed without a list of its images, and %s lists them now: the index names none of them; build a new index to name them", path, images)
	}
	if sh.ImagesSHA256 == "" {
		return nil
	}
	b, err := ReadImagesList(images, rows)
	if err != nil {
		return err
	}
	// (The names compared, not the bytes: a final newline added or taken
	// away, as an editor saves a file, or CRLF line ends, name the same.)
	names := bytes.TrimSuffix(b, []byte{'\n'})
	for _, list := range [][]byte{names, append(slices.Clip(names), '\n')} {
		if imagesSHA256(list) == sh.ImagesSHA256 {
			return nil
		}
	}
	return fmt.Errorf("%s was indexed with another list of its images than %s (images moved or renamed since?): the index names the old ones; build a new index from the features and lists as they are now", path, images)
}

// Append adds source.Rows rows as a new shard, with images, the file
// listing the image of each of its rows ("" if there is none), copied into
// the index (it must have source.Rows lines). fill is called with
// consecutive chunks of the shard's rows to write as float32: it must set
// every value of dst, which is rows×dim; rows that are not already unit
// norm are normalised here (float64 norm, F.normalize's 1e-12 floor), and
// a NaN or Inf is an error. The shard's files are written under temporary
// names and renamed into place, and the manifest, written after them, is
// what makes them part of the index: at once when minCommitInterval has
// passed since it was last written, else by a later Append, Commit or
// Close. A crash leaves the index as its manifest last stood (the files
// of shards appended since are removed by the next AppendIndex).
func (w *IndexWriter) Append(source IndexSource, images string, chunk int, fill func(dst []float32, lo, hi int) error) (err error) {
	if w.unlock == nil {
		return fmt.Errorf("index %s: writer is closed", w.dir)
	}
	if source.Rows < 0 || chunk < 1 {
		return fmt.Errorf("index %s: %d rows in chunks of %d", w.dir, source.Rows, chunk)
	}
	if err := CheckSourcePath(source.Path); err != nil {
		return fmt.Errorf("index %s: %w", w.dir, err)
	}
	if err := w.CheckShardCount(1); err != nil {
		return err
	}
	// The shard's files are numbered by its place, or past it when a
	// manifest renamed by hand uses that number already.
	// A name no manifest uses is written over when it holds a plain file
	// (what a failed append left), and passed over when it holds anything
	// else: a link would take the write outside the index.
	taken := func(name string) bool {
		st, err := os.Lstat(filepath.Join(w.dir, name))
		return w.used[name] || (err == nil && !st.Mode().IsRegular())
	}
	n := len(w.manifest.Shards)
	for taken(fmt.Sprintf("keys-%05d.npy", n)) || taken(fmt.Sprintf("ids-%05d.npy", n)) || taken(fmt.Sprintf("images-%05d.txt", n)) {
		n++
	}
	shard := IndexShard{
		Keys: fmt.Sprintf("keys-%05d.npy", n), IDs: fmt.Sprintf("ids-%05d.npy", n),
		Rows: source.Rows, FirstID: w.manifest.Rows, Source: source,
	}
	dim := w.manifest.Dim
	hdr, err := npy.EncodeHeader(w.dtype, []int{int(source.Rows), dim})
	if err != nil {
		return err
	}
	// (Every file of the index is written with atomicfile.Replace: a link
	// planted at one of its names meanwhile is replaced, not written
	// through to a file outside the index. An error of the rows, fill's or
	// the model's outputs', comes back as it is, not as one of writing.)
	err = atomicfile.Replace(filepath.Join(w.dir, shard.Keys), func(out io.Writer) error {
		if _, err := out.Write(hdr); err != nil {
			return err
		}
		rows := int(source.Rows)
		buf := make([]float32, min(chunk, rows)*dim)
		enc := make([]byte, len(buf)*w.dtype.Size())
		for lo := 0; lo < rows; lo += chunk {
			hi := min(lo+chunk, rows)
			x := buf[:(hi-lo)*dim]
			if err := fill(x, lo, hi); err != nil {
				return err
			}
			// fill gives the model's outputs: a NaN there is the model's,
			// whatever the features were.
			if err := normalizeInPlace(x, dim, "the model's output for "+source.Path, lo); err != nil {
				return err
			}
			b := enc[:len(x)*w.dtype.Size()]
			if w.dtype == npy.Float16 {
				leconv.PutF16(b, x)
			} else {
				leconv.PutF32(b, x)
			}
			if _, err := out.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil { // no manifest names the shard's files: remove them
			os.Remove(filepath.Join(w.dir, shard.Keys))
			os.Remove(filepath.Join(w.dir, shard.IDs))
			if shard.Images != "" {
				os.Remove(filepath.Join(w.dir, shard.Images))
			}
		}
	}()
	if images != "" {
		shard.Images = fmt.Sprintf("images-%05d.txt", n)
		if shard.ImagesSHA256, err = copyImages(images, filepath.Join(w.dir, shard.Images), source.Rows); err != nil {
			return err
		}
	}
	if shard.KeysSample, err = sampleKeysFile(filepath.Join(w.dir, shard.Keys)); err != nil {
		return err
	}
	idsHdr, err := npy.EncodeHeader(npy.Int64, []int{int(source.Rows)})
	if err != nil {
		return err
	}
	err = atomicfile.Replace(filepath.Join(w.dir, shard.IDs), func(out io.Writer) error {
		if _, err := out.Write(idsHdr); err != nil {
			return err
		}
		ids := make([]int64, min(source.Rows, idsTile))
		b := make([]byte, 8*len(ids))
		for lo := int64(0); lo < source.Rows; lo += idsTile {
			n := min(idsTile, source.Rows-lo)
			for i := range n {
				ids[i] = shard.FirstID + lo + i
			}
			leconv.PutI64(b[:8*n], ids[:n])
			if _, err := out.Write(b[:8*n]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.manifest.Shards = append(w.manifest.Shards, shard)
	w.manifest.Rows += shard.Rows
	w.use(shard)
	if w.sources != nil {
		w.sources[source.Path] = shard
	}
	if since := time.Since(w.lastCommit); since >= minCommitInterval && since >= 10*w.commitCost {
		return w.Commit()
	}
	return nil
}

// writeManifest is atomicfile.ReplaceBytes (a variable: tests fill the
// disk).
var writeManifest = atomicfile.ReplaceBytes

// Commit writes the manifest, if shards were appended since it was last
// written. A manifest that does not fit on a full disk is written without
// the newest shards, their files removed one at a time until it fits (a
// full disk lost every shard appended since the last write, the whole
// index in its first second); any other failure drops them all. Commit's
// error then says which files the index does not hold.
func (w *IndexWriter) Commit() error {
	if len(w.manifest.Shards) == w.committed {
		return nil
	}
	start := time.Now()
	var dropped []IndexShard
	var err, cause error // (cause: the first failure, which the error names)
	for {
		if w.noManifest && len(w.manifest.Shards) == 0 {
			// A first append whose every shard was dropped writes no
			// manifest: an empty index, tied to its model, would be all
			// it left. Without one, Close removes the lock file and the
			// directories the append made, as after any failed first
			// append.
			err = cause
			break
		}
		var b []byte
		if b, err = json.MarshalIndent(w.manifest, "", "  "); err == nil {
			err = writeManifest(filepath.Join(w.dir, IndexManifestFile), append(b, '\n'))
		}
		if err == nil {
			w.noManifest = false
		}
		if err == nil || len(w.manifest.Shards) == w.committed {
			break
		}
		if cause == nil {
			cause = err
		}
		// (A full quota is a full disk to this index.)
		full := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
		drop := w.manifest.Shards[w.committed:]
		if full {
			drop = drop[len(drop)-1:]
		}
		for _, s := range drop {
			for _, name := range []string{s.Keys, s.IDs, s.Images} {
				if name != "" {
					os.Remove(filepath.Join(w.dir, name))
				}
				delete(w.used, name)
			}
			w.manifest.Rows -= s.Rows
		}
		dropped = append(slices.Clone(drop), dropped...)
		w.manifest.Shards = w.manifest.Shards[:len(w.manifest.Shards)-len(drop)]
		if !full {
			break // (the manifest on disk is the committed one)
		}
	}
	w.committed = len(w.manifest.Shards)
	if err == nil {
		w.lastCommit, w.commitCost = time.Now(), time.Since(start)
	}
	if len(dropped) == 0 {
		return err
	}
	w.sources = nil // (made again from the manifest on its next use)
	what := dropped[0].Source.Path
	if len(dropped) > 1 {
		what = fmt.Sprintf("%d files from %s on", len(dropped), what)
	}
	if w.noManifest {
		return fmt.Errorf("index %s: writing its manifest: %w; so no index is made (the projections of %s are removed): run the same command again (once the disk has room, if it is full)", w.dir, cause, what)
	}
	return fmt.Errorf("index %s: writing its manifest: %w; so the index does not hold the projections of %s, made since it was last written: run the same command again to add them (once the disk has room, if it is full)", w.dir, cause, what)
}

// copyImages copies the list of images at src to dst (atomically),
// checked by ReadImagesList, and returns the copy's hex SHA-256.
func copyImages(src, dst string, rows int64) (string, error) {
	b, err := ReadImagesList(src, rows)
	if err != nil {
		return "", err
	}
	return imagesSHA256(b), atomicfile.ReplaceBytes(dst, b)
}

// imagesSHA256 is a shard's images_sha256 of its list b, as copied.
func imagesSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ReadImagesList reads the list of images at path (one per line, the last
// line with or without its newline; CRLF line ends become LF) of a
// features file of rows rows, and checks that it has rows lines. It must be
// a regular file (or a link to one): a pipe or a device would never end.
func ReadImagesList(path string, rows int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (a list of images is a text file)", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\r")) // (the last line's, without its \n)
	n := int64(bytes.Count(b, []byte{'\n'}))
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	if n != rows {
		// (Empty lines at the end, which an editor may leave, are said as such.)
		text := bytes.TrimRight(b, "\n")
		empty := int64(len(b) - len(text)) // (newlines at the end: one of them ends the last named line)
		if len(text) > 0 {
			empty--
		}
		if empty > 0 && n-empty == rows {
			which := "its last line is empty; remove it"
			if empty > 1 {
				which = fmt.Sprintf("its last %d lines are empty; remove them", empty)
			}
			return nil, fmt.Errorf("%s lists %s, but its features file has %s: %s", path, plural.Count(n, "image", "images"), plural.Count(rows, "row", "rows"), which)
		}
		return nil, fmt.Errorf("%s lists %s, but its features file has %s (the list of another extraction?)", path, plural.Count(n, "image", "images"), plural.Count(rows, "row", "rows"))
	}
	// No file is named by nothing or holds a NUL: such a line names no
	// image a search could return.
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'}) {
		switch {
		case len(line) == 0 && rows > 0:
			return nil, fmt.Errorf("%s: line %d is empty, where the image of row %d should be named", path, i+1, i)
		case bytes.IndexByte(line, 0) >= 0:
			return nil, fmt.Errorf("%s: line %d holds a NUL byte, which no file name does (a binary file?)", path, i+1)
		}
	}
	return b, nil
}

// ImageLists counts the shards of the index that have rows (needed: a
// shard of none needs no list of images) and those of them that list
// their rows' images (listed). Images names rows where they are equal.
func (m IndexManifest) ImageLists() (listed, needed int) {
	for _, sh := range m.Shards {
		if sh.Rows > 0 {
			needed++
			if sh.Images != "" {
				listed++
			}
		}
	}
	return listed, needed
}

// ImagesBytes is about the memory Images holds to name entries rows, at
// most: 16 bytes a name, and every shard's list, read whole and split (its
// bytes twice, 16 bytes a line). 0 when a shard with rows has no list:
// Images then names none.
func (ix *Index) ImagesBytes(entries int64) int64 {
	if listed, needed := ix.Manifest.ImageLists(); listed < needed {
		return 0
	}
	n := 16 * entries
	for _, sh := range ix.Manifest.Shards {
		if sh.Images == "" {
			continue // (a shard of no rows)
		}
		size := int64(0)
		if st, err := os.Stat(filepath.Join(ix.Dir, sh.Images)); err == nil {
			size = st.Size()
		}
		n += 2*size + 16*sh.Rows
	}
	return n
}

// Images returns the image of each row p in rows, from the lists the
// index's shards hold (see Append); ok is false, with no error, when a
// shard with rows has no list. Each shard's list is read once, when a row
// needs it.
func (ix *Index) Images(rows []int64) (names []string, ok bool, err error) {
	if listed, needed := ix.Manifest.ImageLists(); listed < needed {
		return nil, false, nil
	}
	lists := map[int][]string{}
	names = make([]string, len(rows))
	for i, p := range rows {
		if p < 0 || p >= ix.Manifest.Rows {
			return nil, false, fmt.Errorf("index %s: row %d of %d", ix.Dir, p, ix.Manifest.Rows)
		}
		s, r := ix.Keys.locate(p)
		list, read := lists[s]
		if !read {
			sh := ix.Manifest.Shards[s]
			f, err := atomicfile.OpenRegular(filepath.Join(ix.Dir, sh.Images), os.O_RDONLY, 0)
			if err != nil {
				return nil, false, fmt.Errorf("index %s: %w", ix.Dir, err)
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return nil, false, fmt.Errorf("index %s: %w", ix.Dir, err)
			}
			if err := checkImages(bytes.NewReader(b), sh); err != nil {
				return nil, false, fmt.Errorf("index %s: %w", ix.Dir, err)
			}
			list = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if len(b) == 0 {
				list = nil
			}
			lists[s] = list
		}
		names[i] = list[r]
	}
	return names, true, nil
}

// CheckImages checks the shards' lists of images, as a search that names
// the images it finds does (OpenIndex leaves them to it): for a caller
// that vouches for the whole index (info).
func (ix *Index) CheckImages() error {
	for _, sh := range ix.Manifest.Shards {
		if err := checkShardImages(ix.Dir, sh); err != nil {
			return fmt.Errorf("index %s: %s: %w", ix.Dir, sh.Images, err)
		}
	}
	return nil
}

// checkShardImages checks the images list of a shard in dir, if it has
// one, as a search that names the images it finds does.
func checkShardImages(dir string, sh IndexShard) error {
	if sh.Images == "" {
		return nil
	}
	f, err := atomicfile.OpenRegular(filepath.Join(dir, sh.Images), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return checkImages(f, sh)
}

// checkImages checks a shard's images list, read from r, against the
// manifest: its SHA-256 when recorded, and one line per row.
func checkImages(r io.Reader, sh IndexShard) error {
	h := sha256.New()
	var lines int64
	var last byte = '\n'
	buf := make([]byte, 1<<16)
	for {
		n, err := r.Read(buf)
		h.Write(buf[:n])
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if n > 0 {
			last = buf[n-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sh.Images, err)
		}
	}
	if last != '\n' {
		lines++ // a last line without its newline
	}
	if sh.ImagesSHA256 != "" && hex.EncodeToString(h.Sum(nil)) != sh.ImagesSHA256 {
		return fmt.Errorf("%s is not the list the manifest recorded (images_sha256 differs): the file was replaced, swapped with another shard's or edited", sh.Images)
	}
	if lines != sh.Rows {
		return fmt.Errorf("%s lists %s, the shard has %s", sh.Images, plural.Count(lines, "image", "images"), plural.Count(sh.Rows, "row", "rows"))
	}
	return nil
}

// sampleKeysFile is keysSample of the rows of the keys file at path.
func sampleKeysFile(path string) (string, error) {
	a, err := npy.Open(path)
	if err != nil {
		return "", err
	}
	defer a.Close()
	raw, err := a.RawRows(0, a.Rows())
	if err != nil {
		return "", err
	}
	sample, err := DataSample(raw)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return sample, nil
}

// Close commits the shards appended since the manifest was last written
// (Commit; its error is Close's) and releases the lock. An index that
// never got a manifest (its first append failed, or was never made)
// leaves nothing of this writer behind: the lock file is removed, still
// locked (see lockDir), and so are the directories AppendIndex made for
// it, as long as nothing else is in them.
func (w *IndexWriter) Close() error {
	if w.unlock == nil {
		return nil
	}
	err := w.Commit()
	w.release()
	return err
}

// release is Close without the commit: what AppendIndex does when it
// fails, before the writer knows which shards its manifest on disk holds.
func (w *IndexWriter) release() {
	if _, err := os.Lstat(filepath.Join(w.dir, IndexManifestFile)); errors.Is(err, fs.ErrNotExist) {
		os.Remove(filepath.Join(w.dir, IndexLockFile))
		madedirs.Remove(w.dir, w.madeTop)
	}
	w.unlock()
	w.unlock = nil
}

// normEpsilon is the smallest divisor of a row's normalisation, as in
// PyTorch's F.normalize (eps = 1e-12), which CLIP_benchmark applies to its
// embeddings.
const normEpsilon = 1e-12

// normalizeInPlace divides every row of x by max(‖row‖₂, 1e-12), norm and
// division in float64 (PyTorch's F.normalize), and rejects NaN and Inf;
// name and first (the first row's number) are for the error.
func normalizeInPlace(x []float32, dim int, name string, first int) error {
	return normalizeRows(x, x, dim, name, first)
}

// normalizeRows writes the rows of src normalised as normalizeInPlace does
// to dst (len(src); dst may be src), each value rounded to float32 once.
func normalizeRows[T float32 | float64](dst []float32, src []T, dim int, name string, first int) error {
	for r := 0; r < len(src)/dim; r++ {
		row := src[r*dim : (r+1)*dim]
		var sum float64
		for i, v := range row {
			f := float64(v)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%s: row %d, column %d is %v", name, first+r, i, v)
			}
			sum += f * f
		}
		out := dst[r*dim : (r+1)*dim]
		if math.IsInf(sum, 0) {
			// The sum of squares of finite float64 values overflowed:
			// normalise in units of the row's largest magnitude (whose
			// norm may itself be beyond float64's range; far above the
			// epsilon either way).
			scale := 0.0
			for _, v := range row {
				scale = max(scale, math.Abs(float64(v)))
			}
			sum = 0
			for _, v := range row {
				f := float64(v) / scale
				sum += f * f
			}
			norm := math.Sqrt(sum)
			for i, v := range row {
				out[i] = float32(float64(v) / scale / norm)
			}
			continue
		}
		norm := max(math.Sqrt(sum), normEpsilon)
		for i, v := range row {
			out[i] = float32(float64(v) / norm)
		}
	}
	return nil
}

// NormalizeQueries normalises the rows of x in place like the index's rows
// (see Append), so that inner products rank by cosine.
func NormalizeQueries(x []float32, dim int, name string) error {
	return normalizeInPlace(x, dim, name, 0)
}

// NormalizeQueries64 writes the float64 rows x, normalised like
// NormalizeQueries (in float64, before the one rounding to float32: values
// beyond float32's range keep their direction), to dst (len(x) values);
// first, the number of x's first row, is for the error.
func NormalizeQueries64(dst []float32, x []float64, dim int, name string, first int) error {
	return normalizeRows(dst, x, dim, name, first)
}
