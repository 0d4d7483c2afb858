package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/dinoclip/dinoclip/retrieval"
)

// Inputs identifies the contents of a run's training data and evaluation
// sets (RunInfo.Inputs), so that a resume on other contents of the same
// shape (a file rewritten, another data set at the same place) is refused
// rather than continued into a result no uninterrupted run gives.
type Inputs struct {
	// Data has one entry per training file, in the dataset's shard order.
	Data []FileID `json:"data"`
	// Evals has one entry per evaluation set, in the run's order.
	Evals []SetID `json:"evals"`
}

// FileID identifies a training file by its name in the data directory,
// its size, and SampleSHA256: the SHA-256 of the whole file when it is at
// most sampleBlocks x sampleBlockSize bytes, else of sampleBlocks blocks
// of sampleBlockSize bytes spaced evenly from its first byte to its last
// (the first block holds the .npy header), each preceded by its offset as
// 8 bytes little-endian. A training set is gigabytes: a full hash reads
// all of it on every start and resume, the samples 512 KiB a file
// (docs/FORMAT.md). Any rewrite that changes the size, the header or the
// bytes of one sampled block is seen; one that changes only bytes between
// the samples is not.
type FileID struct {
	Name         string `json:"name"`
	Size         int64  `json:"size"`
	SampleSHA256 string `json:"sample_sha256"`
}

// SetID identifies an evaluation set by its name and the SHA-256 of its
// contents as loaded (the arrays of retrieval.Set, float32 and int64 little
// endian, in the order ImageFeatures, ImageCLIP, CaptionCLIP,
// CaptionImage): whole, since a set is held in memory anyway.
type SetID struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// The sampling of FileID.
const (
	sampleBlocks    = 32
	sampleBlockSize = 16 << 10
)

// SHA256 is the hex SHA-256 of in as run.json records it (State.InputsSHA256);
// "" for nil (a run from before inputs were recorded).
func (in *Inputs) SHA256() string {
	if in == nil {
		return ""
	}
	b, err := json.Marshal(in)
	if err != nil {
		panic(err) // (strings and integers only)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// InputsOf identifies the contents of the training data d and the
// evaluation sets evals.
func InputsOf(d *Dataset, evals []*retrieval.Set) (*Inputs, error) {
	in := &Inputs{Data: []FileID{}, Evals: []SetID{}}
	for _, s := range d.shards {
		for _, name := range []string{s.name + FeatureSuffix, s.name + TargetSuffix} {
			id, err := fileID(filepath.Join(d.Dir, name))
			if err != nil {
				return nil, fmt.Errorf("training data: %w", err)
			}
			in.Data = append(in.Data, id)
		}
	}
	for _, s := range evals {
		in.Evals = append(in.Evals, SetID{Name: s.Name, SHA256: setSHA256(s)})
	}
	return in, nil
}

// fileID is the FileID of the file at path.
func fileID(path string) (FileID, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileID{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return FileID{}, err
	}
	id := FileID{Name: filepath.Base(path), Size: st.Size()}
	h := sha256.New()
	if id.Size <= sampleBlocks*sampleBlockSize {
		if _, err := io.Copy(h, f); err != nil {
			return id, fmt.Errorf("%s: %w", path, err)
		}
	} else {
		buf := make([]byte, sampleBlockSize)
		var off [8]byte
		span := id.Size - sampleBlockSize
		for i := int64(0); i < sampleBlocks; i++ {
			// i*span/(n-1) without overflow: span < 2^63 and i < 32.
			at := span/(sampleBlocks-1)*i + span%(sampleBlocks-1)*i/(sampleBlocks-1)
			if _, err := f.ReadAt(buf, at); err != nil {
				return id, fmt.Errorf("%s: %w", path, err)
			}
			binary.LittleEndian.PutUint64(off[:], uint64(at))
			h.Write(off[:])
			h.Write(buf)
		}
	}
	id.SampleSHA256 = hex.EncodeToString(h.Sum(nil))
	return id, nil
}

// setSHA256 is SetID.SHA256 of s.
func setSHA256(s *retrieval.Set) string {
	h := sha256.New()
	for _, a := range [][]float32{s.ImageFeatures, s.ImageCLIP, s.CaptionCLIP} {
		writeFloat32s(h, a)
	}
	var b [8]byte
	for _, x := range s.CaptionImage {
		binary.LittleEndian.PutUint64(b[:], uint64(x))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeFloat32s(h hash.Hash, a []float32) {
	b := make([]byte, 4*len(a))
	for i, x := range a {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	h.Write(b)
}

// diff names the first way in which the inputs now (in) are not the ones
// a run recorded (run), with where the data and sets now are; "" if they
// are the same.
func (run *Inputs) diff(in *Inputs, dataDir string, evals []*retrieval.Set) string {
	if len(run.Data) != len(in.Data) {
		return fmt.Sprintf("the training data %s has %d files, the run's had %d", dataDir, len(in.Data), len(run.Data))
	}
	for i, r := range run.Data {
		switch n := in.Data[i]; {
		case n.Name != r.Name:
			return fmt.Sprintf("the training data %s has %s where the run's had %s", dataDir, n.Name, r.Name)
		case n.Size != r.Size:
			return fmt.Sprintf("%s is %d bytes, the run's was %d", filepath.Join(dataDir, n.Name), n.Size, r.Size)
		case n.SampleSHA256 != r.SampleSHA256:
			return fmt.Sprintf("%s is not the file the run was started on (same size, other contents)", filepath.Join(dataDir, n.Name))
		}
	}
	if len(run.Evals) != len(in.Evals) {
		return fmt.Sprintf("%d evaluation sets, the run's had %d", len(in.Evals), len(run.Evals))
	}
	for i, r := range run.Evals {
		if n := in.Evals[i]; n != r {
			where := evals[i].Dir
			if where == "" {
				where = "(in memory)"
			}
			return fmt.Sprintf("the evaluation set %q %s does not hold the run's contents", n.Name, where)
		}
	}
	return ""
}
