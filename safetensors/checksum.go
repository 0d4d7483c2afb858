package safetensors

// The SHA-256 of a file's data buffer, recorded in its metadata by dinoclip's
// writers and verified by the reader: the header's offsets check that every
// byte belongs to a tensor, not that the bytes are the ones written, so a bit
// flip or a tampered tensor would otherwise load as silently wrong numbers.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"maps"

	"github.com/dinoclip/dinoclip/internal/mmapfault"
)

// DataSHA256Key is the __metadata__ key under which dinoclip records the
// SHA-256 of a file's data buffer (every byte after the header: the tensors
// laid end to end in file order), as 64 lowercase hex digits. A file that
// has it is verified on reading; one without it (written by the
// safetensors library's save_file, or by dinoclip before the key existed)
// is read as before.
const DataSHA256Key = "dinoclip.data_sha256"

// WithDataSHA256 returns a copy of metadata with DataSHA256Key set to the
// SHA-256 of the tensors' data in the given order, as Write and Marshal
// lay it out. The hash is taken from the tensors in memory, so writing
// the file needs no second pass over it; a DataSHA256Key already in
// metadata (copied from the file a model was read from) is replaced.
func WithDataSHA256(tensors []Tensor, metadata map[string]string) map[string]string {
	h := sha256.New()
	for _, t := range tensors {
		h.Write(t.Data)
	}
	out := maps.Clone(metadata)
	if out == nil {
		out = map[string]string{}
	}
	out[DataSHA256Key] = hex.EncodeToString(h.Sum(nil))
	return out
}

// recordedSHA256 is the data hash a file's metadata records (nil when it
// records none). A value that is not 64 lowercase hex digits is a header
// error: no writer makes one, so the file was edited.
func recordedSHA256(meta map[string]string) ([]byte, error) {
	s, ok := meta[DataSHA256Key]
	if !ok {
		return nil, nil
	}
	sum, err := hex.DecodeString(s)
	if err != nil || len(sum) != sha256.Size || hex.EncodeToString(sum) != s {
		return nil, errorf(ErrHeader, "metadata %s %q is not a SHA-256 (64 lowercase hex digits): the file is corrupt or was edited", DataSHA256Key, s)
	}
	return sum, nil
}

// verify compares the data buffer with its recorded SHA-256, once, on the
// first read of a tensor's bytes: reading only the header (ReadConfig, the
// metadata) costs no pass over the data, and no byte is handed out before
// the whole buffer has been checked. The hash runs under the fault guard
// (a file truncated while mapped faults) inside the Once, so a fault is
// recorded as the outcome rather than leaving the Once done with no error.
func (f *File) verify() error {
	if f.dataSHA256 == nil {
		return nil
	}
	f.verifyOnce.Do(func() {
		var sum [sha256.Size]byte
		if err := mmapfault.Guard(func() { sum = sha256.Sum256(f.buf) }); err != nil {
			f.verifyErr = err
			return
		}
		if !bytes.Equal(sum[:], f.dataSHA256) {
			f.verifyErr = errorf(ErrChecksum, "data does not match its recorded SHA-256 (metadata %s): the file is corrupt or was edited", DataSHA256Key)
		}
	})
	return f.verifyErr
}
