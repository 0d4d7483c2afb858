package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
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

// tableSHA256 is the SHA256Key value of the safetensors file at path,
// computed here from its bytes and its header's table as docs/FORMAT.md
// describes it, and the offset of its data buffer.
func tableSHA256(t *testing.T, path string) (string, int) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	start := 8 + f.HeaderLen()
	infos := f.Tensors()
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var listing strings.Builder
	for _, info := range infos {
		shape := make([]string, len(info.Shape))
		for i, d := range info.Shape {
			shape[i] = fmt.Sprint(d)
		}
		sum := sha256.Sum256(b[start+info.Begin : start+info.End])
		fmt.Fprintf(&listing, "%d:%s\t%s\t%s\t%d\t%d\t%x\n", len(info.Name), info.Name, info.DType, strings.Join(shape, ","), info.Begin, info.End, sum)
	}
	sum := sha256.Sum256([]byte(listing.String()))
	return hex.EncodeToString(sum[:]), start
}

func recorded(t *testing.T, path string) (string, bool) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, ok := f.Metadata()[safetensors.SHA256Key]
	return v, ok
}

// rewrite writes path again with its tensors unchanged and edit(metadata).
func rewrite(t testing.TB, path string, edit func(map[string]string)) {
	t.Helper()
	rewriteTensors(t, path, nil, func(_ []safetensors.Tensor, meta map[string]string) map[string]string {
		edit(meta)
		return meta
	})
}

// rewriteTensors writes path again, as a tool that edits a file would: the
// i-th tensor as tensor makes it from the file (nil: its bytes as they
// are), under the metadata that meta makes of the new tensors and the
// file's metadata.
func rewriteTensors(t testing.TB, path string, tensor func(f *safetensors.File, i int, info safetensors.TensorInfo) safetensors.Tensor,
	meta func(tensors []safetensors.Tensor, old map[string]string) map[string]string) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var tensors []safetensors.Tensor
	for i, info := range f.Tensors() {
		if tensor != nil {
			tensors = append(tensors, tensor(f, i, info))
			continue
		}
		data, _, err := f.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: slices.Clone(data)})
	}
	m := meta(tensors, f.Metadata())
	f.Close()
	if err := safetensors.Write(path, tensors, m); err != nil {
		t.Fatal(err)
	}
}

// float32Of is the float32 tensor info names in f, or fails t.
func float32Of(t testing.TB, f *safetensors.File, info safetensors.TensorInfo) ([]float32, []int) {
	t.Helper()
	v, shape, err := f.Float32(info.Name)
	if err != nil {
		t.Fatal(err)
	}
	return v, shape
}

// Every file Save and WriteModel write records the SHA-256 of its tensors,
// and it survives a load and a save: the same values, the same hashes. The
// key is not handed back in Model.Meta, Checkpoint.Meta or EMAMeta (it was
// verified, and a caller must not copy it into a file of other tensors).
func TestFilesRecordSHA256(t *testing.T) {
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
		want, _ := tableSHA256(t, p)
		if got, ok := recorded(t, p); !ok || got != want {
			t.Errorf("%s: %s %q, want %q", p, safetensors.SHA256Key, got, want)
		}
	}
	ck, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	for what, meta := range map[string]map[string]string{"Checkpoint.Meta": ck.Meta, "EMAMeta": ck.EMAMeta, "Model.Meta": m.Meta} {
		if _, ok := meta[safetensors.SHA256Key]; ok || len(meta) == 0 {
			t.Errorf("%s = %v: want the metadata less %s", what, meta, safetensors.SHA256Key)
		}
	}
	if ck.Meta["step"] != "4" || ck.EMAMeta["ema_decay"] != "0.9" || m.Meta["averaged_from"] != "[]" {
		t.Errorf("metadata lost: %v, %v, %v", ck.Meta, ck.EMAMeta, m.Meta)
	}
	again := filepath.Join(t.TempDir(), "step-4")
	if err := Save(again, ck); err != nil {
		t.Fatal(err)
	}
	for _, name := range checkpointFiles {
		a, _ := recorded(t, filepath.Join(dir, name))
		b, _ := recorded(t, filepath.Join(again, name))
		if a != b {
			t.Errorf("%s: %s %s after a load and a save, %s before", name, safetensors.SHA256Key, b, a)
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
		_, start := tableSHA256(t, path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[start+(len(b)-start)/2] ^= 0x04
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want := path + ": tensors do not match their recorded SHA-256: " + remedy
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
func TestSHA256Absent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "step-4")
	ck := fullCheckpoint()
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	for _, name := range checkpointFiles {
		rewrite(t, filepath.Join(dir, name), func(m map[string]string) { delete(m, safetensors.SHA256Key) })
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatalf("a checkpoint without %s: %v", safetensors.SHA256Key, err)
	}
	if !slices.Equal(back.Params, ck.Params) || !slices.Equal(back.EMA, ck.EMA) || !slices.Equal(back.Float64.V, ck.Float64.V) {
		t.Fatal("a checkpoint without the key loads other values")
	}
	for _, name := range checkpointFiles {
		dir := filepath.Join(t.TempDir(), "step-4")
		if err := Save(dir, ck); err != nil {
			t.Fatal(err)
		}
		rewrite(t, filepath.Join(dir, name), func(m map[string]string) { m[safetensors.SHA256Key] = "sha256:deadbeef" })
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `dinoclip.sha256 "sha256:deadbeef" is not a SHA-256`) {
			t.Errorf("%s with a malformed %s: %v", name, safetensors.SHA256Key, err)
		}
	}
}

// remedy ends the refusal of a file whose tensors do not match their
// recorded hash: what a tool that rewrote them must do.
const remedy = "the file is corrupt or was edited; a tool that rewrote its tensors must drop the metadata key dinoclip.sha256"

// Two same-shape tensors of a model whose offsets are swapped in the
// header (every check of the layout passes, and without the key the model
// would load with the two exchanged) are refused, as is a model rewritten
// by a tool that changed its tensors (to float64 and back, rounded) but
// kept the metadata: the refusal says what such a tool must do.
func TestEditedTableRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), ModelFile)
	params := nn.InitParameters[float32](small, 3)
	if err := WriteModel(path, small, params, nil); err != nil {
		t.Fatal(err)
	}
	swapped := swapOffsets(t, path)
	want := swapped + ": tensors do not match their recorded SHA-256: " + remedy
	if _, err := ReadModel(swapped); err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("ReadModel with two tensors' offsets swapped: %v, want %q", err, want)
	}
	// Without the key the same swap loads, with other values: what the
	// key guards against.
	unkeyed := filepath.Join(t.TempDir(), ModelFile)
	if err := WriteModel(unkeyed, small, params, nil); err != nil {
		t.Fatal(err)
	}
	rewrite(t, unkeyed, func(m map[string]string) { delete(m, safetensors.SHA256Key) })
	if m, err := ReadModel(swapOffsets(t, unkeyed)); err != nil || slices.Equal(m.Params, params) {
		t.Fatalf("the swapped file without the key: %v (the same values: %v)", err, err == nil)
	}

	// A converter that keeps the metadata: each tensor through float16's
	// precision and back (here: a changed last bit), metadata copied.
	rewriteTensors(t, path, func(f *safetensors.File, _ int, info safetensors.TensorInfo) safetensors.Tensor {
		v, shape := float32Of(t, f, info)
		v[0] = math.Nextafter32(v[0], 1)
		return safetensors.NewFloat32(info.Name, shape, v)
	}, func(_ []safetensors.Tensor, old map[string]string) map[string]string { return old })
	if _, err := ReadModel(path); err == nil || !strings.HasSuffix(err.Error(), path+": tensors do not match their recorded SHA-256: "+remedy) {
		t.Errorf("ReadModel of tensors rewritten under the old metadata: %v", err)
	}
}

// swapOffsets writes a copy of the model file at path with the
// data_offsets of two tensors of the same shape exchanged in its header,
// and returns the copy's path.
func swapOffsets(t *testing.T, path string) string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	infos := f.Tensors()
	start := 8 + f.HeaderLen()
	f.Close()
	var x, y string
	for i, a := range infos {
		for _, b := range infos[i+1:] {
			ox, oy := fmt.Sprintf(`"data_offsets":[%d,%d]`, a.Begin, a.End), fmt.Sprintf(`"data_offsets":[%d,%d]`, b.Begin, b.End)
			if x == "" && slices.Equal(a.Shape, b.Shape) && len(ox) == len(oy) {
				x, y = ox, oy
			}
		}
	}
	if x == "" {
		t.Fatal("no two tensors of the same shape and offsets' length")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hdr := string(b[8:start])
	hdr = strings.Replace(strings.Replace(strings.Replace(hdr, x, "\x00", 1), y, x, 1), "\x00", y, 1)
	out := filepath.Join(t.TempDir(), ModelFile)
	if err := os.WriteFile(out, append(append(b[:8:8], hdr...), b[start:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkReadModel reads a default-size model file (54.6M parameters,
// 218 MB) with its tensors' SHA-256 recorded and without: the difference
// is the cost of the verification.
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
	rewrite(b, path, func(m map[string]string) { delete(m, safetensors.SHA256Key) })
	b.Run("no-sha256", read)
}

// BenchmarkWriteModel writes a default-size model file as WriteModel does
// (the tensors' SHA-256 computed from memory) and without the key (the
// same tensors through safetensors.Write): the difference is the cost of
// the hash. Both include the fsync.
func BenchmarkWriteModel(b *testing.B) {
	c := nn.DefaultConfig()
	path := filepath.Join(b.TempDir(), ModelFile)
	params := nn.InitParameters[float32](c, 1)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(4 * c.NumParams()))
		for b.Loop() {
			if err := WriteModel(path, c, params, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("no-sha256", func(b *testing.B) {
		b.SetBytes(int64(4 * c.NumParams()))
		for b.Loop() {
			l := c.Layout()
			tensors := make([]safetensors.Tensor, len(l.Tensors))
			for i, t := range l.Tensors {
				tensors[i] = safetensors.NewFloat32(t.Name, t.Shape, nn.View(params, t))
			}
			if err := safetensors.Write(path, tensors, map[string]string{"format": ModelFormat}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
