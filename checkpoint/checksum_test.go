package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
)

// fullCheckpoint is a checkpoint with every file Save writes: model,
// optimizer, EMA and float64 state.
func fullCheckpoint() *Checkpoint {
	n := small.NumParams()
	s := &Float64State{Params: make([]float64, n), M: make([]float64, n), V: make([]float64, n)}
	ck := &Checkpoint{Config: small, Params: make([]float32, n), M: make([]float32, n), V: make([]float32, n),
		State: []byte(`{"step":4}`), Meta: map[string]string{"step": "4"}, Float64: s,
		EMA: nn.InitParameters[float32](small, 8), EMAMeta: map[string]string{"ema_decay": "0.9"}}
	for i, p := range nn.InitParameters[float32](small, 7) {
		s.Params[i], s.M[i], s.V[i] = float64(p), float64(i)/8, float64(i)/16
		ck.Params[i], ck.M[i], ck.V[i] = float32(s.Params[i]), float32(s.M[i]), float32(s.V[i])
	}
	return ck
}

var checkpointFiles = []string{ModelFile, OptimizerFile, EMAFile, Float64File}

// dataSHA256 is the hex SHA-256 of a safetensors file's data buffer, and
// the offset of that buffer.
func dataSHA256(t *testing.T, path string) (string, int) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	start := 8 + f.HeaderLen()
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b[start:])
	return hex.EncodeToString(sum[:]), start
}

func recorded(t *testing.T, path string) (string, bool) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, ok := f.Metadata()[safetensors.DataSHA256Key]
	return v, ok
}

// rewrite writes path again with its tensors unchanged and edit(metadata).
func rewrite(t testing.TB, path string, edit func(map[string]string)) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var tensors []safetensors.Tensor
	for _, info := range f.Tensors() {
		data, _, err := f.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: slices.Clone(data)})
	}
	meta := f.Metadata()
	f.Close()
	edit(meta)
	if err := safetensors.Write(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
}

// Every file Save and WriteModel write records the SHA-256 of its data,
// and it survives a load and a save: the same values, the same hashes.
func TestFilesRecordDataSHA256(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "step-4")
	if err := Save(dir, fullCheckpoint()); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "averaged.safetensors") // what average writes
	if err := WriteModel(model, small, nn.InitParameters[float32](small, 1), map[string]string{"averaged_from": "[]"}); err != nil {
		t.Fatal(err)
	}
	paths := []string{model}
	for _, name := range checkpointFiles {
		paths = append(paths, filepath.Join(dir, name))
	}
	for _, p := range paths {
		want, _ := dataSHA256(t, p)
		if got, ok := recorded(t, p); !ok || got != want {
			t.Errorf("%s: %s %q, want %q", p, safetensors.DataSHA256Key, got, want)
		}
	}
	ck, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "step-4")
	if err := Save(again, ck); err != nil {
		t.Fatal(err)
	}
	for _, name := range checkpointFiles {
		a, _ := recorded(t, filepath.Join(dir, name))
		b, _ := recorded(t, filepath.Join(again, name))
		if a != b {
			t.Errorf("%s: %s %s after a load and a save, %s before", name, safetensors.DataSHA256Key, b, a)
		}
	}
}

// A changed bit in the data of any file of a checkpoint (the header's
// offsets still check out) refuses the load in one line naming the file;
// so does a model file to ReadModel.
func TestCorruptDataRefused(t *testing.T) {
	for _, name := range checkpointFiles {
		dir := filepath.Join(t.TempDir(), "step-4")
		if err := Save(dir, fullCheckpoint()); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		_, start := dataSHA256(t, path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[start+(len(b)-start)/2] ^= 0x04
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want := path + ": data does not match its recorded SHA-256 (metadata dinoclip.data_sha256): the file is corrupt or was edited"
		_, err = Load(dir)
		if err == nil || !strings.HasSuffix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Load with %s corrupt: %v, want one line ending %q", name, err, want)
		}
		if name == ModelFile || name == EMAFile {
			if _, err := ReadModel(path); err == nil || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("ReadModel of a corrupt %s: %v", name, err)
			}
		}
	}
}

// Files without the key (from dinoclip before it, or rewritten by a tool
// that drops it) load as before; a key whose value is not a SHA-256 is
// refused.
func TestDataSHA256Absent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "step-4")
	ck := fullCheckpoint()
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	for _, name := range checkpointFiles {
		rewrite(t, filepath.Join(dir, name), func(m map[string]string) { delete(m, safetensors.DataSHA256Key) })
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatalf("a checkpoint without %s: %v", safetensors.DataSHA256Key, err)
	}
	if !slices.Equal(back.Params, ck.Params) || !slices.Equal(back.EMA, ck.EMA) || !slices.Equal(back.Float64.V, ck.Float64.V) {
		t.Fatal("a checkpoint without the key loads other values")
	}
	for _, name := range checkpointFiles {
		dir := filepath.Join(t.TempDir(), "step-4")
		if err := Save(dir, ck); err != nil {
			t.Fatal(err)
		}
		rewrite(t, filepath.Join(dir, name), func(m map[string]string) { m[safetensors.DataSHA256Key] = "sha256:deadbeef" })
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `dinoclip.data_sha256 "sha256:deadbeef" is not a SHA-256`) {
			t.Errorf("%s with a malformed %s: %v", name, safetensors.DataSHA256Key, err)
		}
	}
}

// BenchmarkReadModel reads a default-size model file (54.6M parameters,
// 218 MB) with its data's SHA-256 recorded and without: the difference is
// the cost of the verification.
func BenchmarkReadModel(b *testing.B) {
	c := nn.DefaultConfig()
	path := filepath.Join(b.TempDir(), ModelFile)
	if err := WriteModel(path, c, nn.InitParameters[float32](c, 1), nil); err != nil {
		b.Fatal(err)
	}
	read := func(b *testing.B) {
		b.SetBytes(int64(4 * c.NumParams()))
		for b.Loop() {
			if _, err := ReadModel(path); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("sha256", read)
	rewrite(b, path, func(m map[string]string) { delete(m, safetensors.DataSHA256Key) })
	b.Run("no-sha256", read)
}
