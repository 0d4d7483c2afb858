package safetensors

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// checksummed is a small file of two tensors with its data's SHA-256
// recorded, and the offset of its data buffer.
func checksummed(t *testing.T) ([]byte, int) {
	t.Helper()
	tensors := []Tensor{NewFloat32("w", []int{2, 3}, []float32{1, -2, 3, -4, 5, -6}), NewFloat64("b", []int{2}, []float64{0.5, 7})}
	b, err := Marshal(tensors, WithDataSHA256(tensors, map[string]string{"format": "x"}))
	must(t, err)
	f, err := Read(b)
	must(t, err)
	return b, 8 + f.HeaderLen()
}

// The recorded value is the SHA-256 of the bytes after the header, it
// survives reading and writing again, and a file carrying it reads.
func TestDataSHA256RoundTrip(t *testing.T) {
	b, start := checksummed(t)
	f, err := Read(b)
	must(t, err)
	sum := sha256.Sum256(b[start:])
	if got := f.Metadata()[DataSHA256Key]; got != hex.EncodeToString(sum[:]) || f.Metadata()["format"] != "x" {
		t.Fatalf("metadata %v, want %s = %x", f.Metadata(), DataSHA256Key, sum)
	}
	var tensors []Tensor
	for _, info := range f.Tensors() {
		data, _, err := f.Raw(info.Name)
		must(t, err)
		tensors = append(tensors, Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: data})
	}
	// Written again with the metadata read, as is and with the key
	// recomputed: the same bytes both times.
	again, err := Marshal(tensors, f.Metadata())
	must(t, err)
	recomputed, err := Marshal(tensors, WithDataSHA256(tensors, f.Metadata()))
	must(t, err)
	if string(again) != string(b) || string(recomputed) != string(b) {
		t.Fatal("a round trip changed the file")
	}
	p := filepath.Join(t.TempDir(), "f.safetensors")
	must(t, Write(p, tensors, f.Metadata()))
	g, err := Open(p)
	must(t, err)
	defer g.Close()
	if v, _, err := g.Float64("b"); err != nil || !reflect.DeepEqual(v, []float64{0.5, 7}) {
		t.Fatalf("read back %v, %v", v, err)
	}
}

// WithDataSHA256 leaves the caller's map alone and replaces a key
// already there (copied from the file a model was read from).
func TestWithDataSHA256(t *testing.T) {
	tensors := []Tensor{NewFloat32("w", []int{1}, []float32{1})}
	meta := map[string]string{DataSHA256Key: strings.Repeat("0", 64), "k": "v"}
	before := maps.Clone(meta)
	got := WithDataSHA256(tensors, meta)
	sum := sha256.Sum256(tensors[0].Data)
	if !maps.Equal(meta, before) || got[DataSHA256Key] != hex.EncodeToString(sum[:]) || got["k"] != "v" {
		t.Fatalf("WithDataSHA256 = %v (its argument now %v)", got, meta)
	}
	if got := WithDataSHA256(nil, nil); got[DataSHA256Key] != hex.EncodeToString(sha256.New().Sum(nil)) {
		t.Fatalf("no tensors: %v", got)
	}
}

// A changed byte anywhere in the data, or a tensor's end replaced by
// zeros, passes every check of the header (that is the point) but fails
// every read of a tensor with ErrChecksum, in one line naming the file;
// the header stays readable.
func TestDataSHA256Mismatch(t *testing.T) {
	b, start := checksummed(t)
	edits := map[string]func(d []byte){
		"first byte":          func(d []byte) { d[start] ^= 1 },
		"last byte":           func(d []byte) { d[len(d)-1] ^= 0x80 },
		"padded tensor's end": func(d []byte) { clear(d[start+16 : start+24]) },
	}
	for name, edit := range edits {
		d := append([]byte{}, b...)
		edit(d)
		p := filepath.Join(t.TempDir(), "corrupt.safetensors")
		must(t, os.WriteFile(p, d, 0o644))
		f, err := Open(p)
		if err != nil {
			t.Fatalf("%s: the header no longer opens: %v", name, err)
		}
		if _, ok := f.Info("w"); !ok || f.Metadata()["format"] != "x" {
			t.Errorf("%s: the header is unreadable", name)
		}
		want := "safetensors: " + p + ": data does not match its recorded SHA-256 (metadata dinoclip.data_sha256): the file is corrupt or was edited"
		for _, tensor := range []string{"w", "b", "w"} {
			_, _, err := f.Float64(tensor)
			if !errors.Is(err, ErrChecksum) || err.Error() != want {
				t.Errorf("%s: reading %s: %v, want %q", name, tensor, err, want)
			}
		}
		if _, _, err := f.Raw("b"); !errors.Is(err, ErrChecksum) {
			t.Errorf("%s: Raw: %v", name, err)
		}
		f.Close()
	}
}

// A file without the key reads as before: nothing to verify against.
func TestNoDataSHA256(t *testing.T) {
	for _, name := range []string{"model_f32.safetensors", "dtypes.safetensors"} { // the Python package's files
		f, err := Open(td(name))
		must(t, err)
		if _, ok := f.Metadata()[DataSHA256Key]; ok {
			t.Fatalf("%s records %s", name, DataSHA256Key)
		}
		for _, info := range f.Tensors() {
			if _, _, err := f.Raw(info.Name); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		f.Close()
	}
}

// A value that is not 64 lowercase hex digits refuses the file when it is
// opened: no writer makes one.
func TestMalformedDataSHA256(t *testing.T) {
	tensors := []Tensor{NewFloat32("w", []int{1}, []float32{1})}
	right := WithDataSHA256(tensors, nil)[DataSHA256Key]
	for _, v := range []string{"", "abc", strings.ToUpper(right), right + "0", right[:63], strings.Repeat("g", 64), " " + right[1:]} {
		b, err := Marshal(tensors, map[string]string{DataSHA256Key: v})
		must(t, err)
		_, err = Read(b)
		if !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), "is not a SHA-256 (64 lowercase hex digits)") {
			t.Errorf("%s %q: %v", DataSHA256Key, v, err)
		}
	}
}

// A file truncated while mapped faults while its data is hashed: an
// error, not a crash, and reads stay refused.
func TestTruncatedWhileVerifying(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.safetensors")
	tensors := []Tensor{NewFloat32("w", []int{1 << 16}, make([]float32, 1<<16))}
	must(t, Write(p, tensors, WithDataSHA256(tensors, nil)))
	f, err := Open(p)
	must(t, err)
	defer f.Close()
	must(t, os.Truncate(p, 4096))
	for range 2 {
		if _, _, err := f.Float32("w"); err == nil || !strings.Contains(err.Error(), "truncated or rewritten") {
			t.Fatalf("read of a file truncated before its hash: %v", err)
		}
	}
}
