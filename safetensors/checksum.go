package safetensors

// The SHA-256 of a file's tensor table and data, recorded in its metadata
// by dinoclip's writers and verified by the reader: the header's offsets
// check that every byte belongs to a tensor, not that the bytes are the
// ones written or that each name points at its own bytes, so a bit flip,
// a tensor truncated and padded back, or two tensors' offsets swapped
// would otherwise load as silently wrong numbers.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dinoclip/dinoclip/internal/mmapfault"
)

// SHA256Key is the __metadata__ key under which dinoclip records the
// SHA-256 of a file's tensors, as 64 lowercase hex digits: the hash of a
// canonical listing with one line per tensor in file order (by data
// offset),
//
//	<byte length of name>:<name>\t<dtype>\t<comma-joined shape>\t<begin>\t<end>\t<hex SHA-256 of its bytes>\n
//
// (begin and end being the header's data_offsets), so that it covers the
// names, dtypes, shapes and offsets as well as the data, and the
// per-tensor hashes can be computed in parallel. The rest of the metadata
// is not covered. A file that has the key is verified on reading; one
// without it (written by the safetensors library's save_file, or by a
// tool that dropped the key) is read unverified.
const SHA256Key = "dinoclip.sha256"

// WithSHA256 returns a copy of metadata with SHA256Key set to the hash of
// tensors laid out in the given order, as Write and Marshal lay them out.
// The hash is taken from the tensors in memory (one goroutine per tensor,
// at most GOMAXPROCS at a time), so writing the file needs no second pass
// over it; a SHA256Key already in metadata is replaced. The error is a
// fault reading a tensor's data (one mapped from a file truncated
// meanwhile).
func WithSHA256(tensors []Tensor, metadata map[string]string) (map[string]string, error) {
	infos := make([]TensorInfo, len(tensors))
	off := 0
	for i, t := range tensors {
		infos[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Begin: off, End: off + len(t.Data)}
		off += len(t.Data)
	}
	sum, err := tableSHA256(infos, func(i int) []byte { return tensors[i].Data })
	if err != nil {
		return nil, err
	}
	out := maps.Clone(metadata)
	if out == nil {
		out = map[string]string{}
	}
	out[SHA256Key] = hex.EncodeToString(sum[:])
	return out, nil
}

// tableSHA256 is the SHA256Key value of tensors (in file order), data(i)
// being the bytes of tensors[i]. The tensors are hashed in parallel, the
// largest first, each under the fault guard (a mapped file truncated
// meanwhile faults): the first fault is returned.
func tableSHA256(tensors []TensorInfo, data func(i int) []byte) ([sha256.Size]byte, error) {
	sums := make([][sha256.Size]byte, len(tensors))
	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return (tensors[b].End - tensors[b].Begin) - (tensors[a].End - tensors[a].Begin)
	})
	workers := min(runtime.GOMAXPROCS(0), len(tensors))
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			errs[w] = mmapfault.Guard(func() {
				for {
					k := int(next.Add(1) - 1)
					if k >= len(order) {
						return
					}
					i := order[k]
					sums[i] = sha256.Sum256(data(i))
				}
			})
			if errs[w] != nil {
				next.Store(int64(len(order))) // the others stop at their next tensor
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return [sha256.Size]byte{}, err
		}
	}
	var listing bytes.Buffer
	for i, t := range tensors {
		shape := make([]string, len(t.Shape))
		for j, d := range t.Shape {
			shape[j] = strconv.Itoa(d)
		}
		fmt.Fprintf(&listing, "%d:%s\t%s\t%s\t%d\t%d\t%x\n", len(t.Name), t.Name, t.DType, strings.Join(shape, ","), t.Begin, t.End, sums[i])
	}
	return sha256.Sum256(listing.Bytes()), nil
}

// recordedSHA256 is the hash a file's metadata records (nil when it
// records none). A value that is not 64 lowercase hex digits is a header
// error: no writer makes one, so the file was edited.
func recordedSHA256(meta map[string]string) ([]byte, error) {
	s, ok := meta[SHA256Key]
	if !ok {
		return nil, nil
	}
	sum, err := hex.DecodeString(s)
	if err != nil || len(sum) != sha256.Size || hex.EncodeToString(sum) != s {
		return nil, errorf(ErrHeader, "metadata %s %q is not a SHA-256 (64 lowercase hex digits): the file is corrupt or was edited", SHA256Key, s)
	}
	return sum, nil
}

// verify compares the tensors with their recorded SHA-256, once, on the
// first read of a tensor's bytes: reading only the header (ReadConfig, the
// metadata) costs no pass over the data, and no byte is handed out before
// the whole buffer has been checked. A fault (a file truncated while
// mapped) is recorded as the outcome rather than leaving the Once done
// with no error.
func (f *File) verify() error {
	if f.sha256 == nil {
		return nil
	}
	f.verifyOnce.Do(func() {
		sum, err := tableSHA256(f.tensors, func(i int) []byte { return f.buf[f.tensors[i].Begin:f.tensors[i].End] })
		if err != nil {
			f.verifyErr = err
			return
		}
		if !bytes.Equal(sum[:], f.sha256) {
			f.verifyErr = errorf(ErrChecksum, "tensors do not match their recorded SHA-256: the file is corrupt or was edited; a tool that rewrote its tensors must drop the metadata key %s", SHA256Key)
		}
	})
	return f.verifyErr
}
