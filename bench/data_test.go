package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/train"
)

// writeShards, which draws and writes each array a chunk at a time, writes
// the bytes of drawing each whole and writing it with npy.WriteFloat16 or
// WriteFloat32: shards of more than one chunk, in both dtypes.
func TestWriteShardsStreamed(t *testing.T) {
	for _, f16 := range []bool{false, true} {
		o := DataOptions{Rows: 70001, Shards: 3, InputDim: 8, OutputDim: 4, Float16: f16, Seed: 9}
		dir := t.TempDir()
		files, err := writeShards(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		write := npy.WriteFloat32
		if f16 {
			write = npy.WriteFloat16
		}
		rng := rand.New(rand.NewPCG(o.Seed, 0xda7a))
		ref := t.TempDir()
		for s := range o.Shards {
			n := o.Rows*(s+1)/o.Shards - o.Rows*s/o.Shards
			for _, a := range []struct {
				suffix string
				width  int
			}{{train.FeatureSuffix, o.InputDim}, {train.TargetSuffix, o.OutputDim}} {
				v := make([]float32, n*a.width)
				for i := range v {
					v[i] = 2*rng.Float32() - 1
				}
				name := fmt.Sprintf("shard-%05d%s", s, a.suffix)
				if err := write(filepath.Join(ref, name), []int{n, a.width}, v); err != nil {
					t.Fatal(err)
				}
				got, _ := os.ReadFile(filepath.Join(dir, name))
				want, _ := os.ReadFile(filepath.Join(ref, name))
				if len(want) == 0 || !bytes.Equal(got, want) {
					t.Errorf("float16 %v: %s: %d bytes differ from the whole array's %d", f16, name, len(got), len(want))
				}
			}
		}
		if len(files) != 2*o.Shards {
			t.Errorf("%d files, want %d", len(files), 2*o.Shards)
		}
	}
}
