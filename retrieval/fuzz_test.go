package retrieval

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/codectest"
)

// fuzzIndexManifest is manifest.json of a real index (dinoclip index
// --model RUN --features images.dino.npy, with an images list beside it;
// the paths shortened): of another width than fuzzIndex's files, a seed
// of the layout, not one that opens.
const fuzzIndexManifest = `{
  "format": "dinoclip-index/1",
  "dim": 512,
  "dtype": "float16",
  "rows": 20,
  "model": {
    "sha256": "a0e3fd8f14c439a470af8284edae45426ada9e885163517c0959cefcace216c9",
    "path": "/runs/r/checkpoints/step-00000004/model.safetensors",
    "config": {
      "input_dim": 768,
      "hidden_dim": 16,
      "output_dim": 512,
      "num_residual_blocks": 1
    }
  },
  "shards": [
    {
      "keys": "keys-00000.npy",
      "ids": "ids-00000.npy",
      "rows": 20,
      "first_id": 0,
      "source": {
        "path": "/data/synth/eval/images.dino.npy",
        "size": 61568,
        "rows": 20,
        "sample": "c3c2d79cff3c98b2baecdba07241b25524a7fdee43fcb542b100da89fc0c1cd0"
      },
      "keys_sample": "79b8bc89fda4489d78651dca84f90fc9afda8003e8b84b08c20edcb9e70ed9a8",
      "images": "images-00000.txt",
      "images_sha256": "9d91278543ff77459c21199b542c0e6b1a51d6bde45762c4be287681f16a5b8d"
    }
  ]
}
`

// fuzzIndex builds a small index in a directory of its own: 4-wide
// float16 keys in three shards of 3, 0 and 2 rows, the first and last with
// images lists. It returns the directory, its manifest, the rows' images
// and keys as OpenIndex gives them.
func fuzzIndex(f testing.TB) (dir string, manifest []byte, images []string, keys []float32) {
	const dim = 4
	dir = filepath.Join(f.TempDir(), "index")
	model := IndexModel{
		SHA256: strings.Repeat("5a", 32), Path: "/runs/r/best/model.safetensors",
		Config: json.RawMessage(`{"input_dim":8,"hidden_dim":4,"output_dim":4,"num_residual_blocks":1}`),
	}
	w, err := AppendIndex(dir, model, dim, "float16")
	if err != nil {
		f.Fatal(err)
	}
	lists := f.TempDir()
	for i, rows := range []int{3, 0, 2} {
		list := ""
		if rows > 0 {
			var names []string
			for r := range rows {
				names = append(names, fmt.Sprintf("shard%d/photo %d.jpg", i, r))
			}
			images = append(images, names...)
			list = filepath.Join(lists, fmt.Sprintf("s%d.images.txt", i))
			if err := os.WriteFile(list, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
				f.Fatal(err)
			}
		}
		src := IndexSource{Path: fmt.Sprintf("/data/s%d.dino.npy", i), Size: int64(128 + 32*rows), Rows: int64(rows)}
		err := w.Append(src, list, 2, func(dst []float32, lo, hi int) error {
			for r := lo; r < hi; r++ {
				for j := range dim {
					dst[(r-lo)*dim+j] = float32(1 + i + r*j)
				}
			}
			return nil
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	if manifest, err = os.ReadFile(filepath.Join(dir, IndexManifestFile)); err != nil {
		f.Fatal(err)
	}
	ix, err := OpenIndex(dir)
	if err != nil {
		f.Fatal(err)
	}
	defer ix.Close()
	keys = make([]float32, dim*ix.Keys.Rows())
	if _, err := ix.Keys.ReadRows(keys, 0, ix.Keys.Rows()); err != nil {
		f.Fatal(err)
	}
	return dir, manifest, images, keys
}

// FuzzOpenIndexManifest opens an index whose manifest.json is the fuzzed
// bytes and whose other files are those fuzzIndex wrote. A manifest
// refused is refused with a message naming the index; one accepted opens
// the index as built, whatever it was edited into: keys of its width, as
// many rows as its shards hold, each row the key and the image built for
// it (a manifest may drop what it records, never pair a row with another's
// key or image), a manifest that reads back the same once written again,
// and IsIndex of the directory.
func FuzzOpenIndexManifest(f *testing.F) {
	dir, manifest, images, keys := fuzzIndex(f)
	f.Add(manifest)
	// The same without the hashes an older index lacks: its edits reach
	// the checks of the files themselves.
	var m IndexManifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		f.Fatal(err)
	}
	for i := range m.Shards {
		m.Shards[i].KeysSample, m.Shards[i].ImagesSHA256, m.Shards[i].Source.Sample = "", "", ""
	}
	old, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(old)
	f.Add([]byte(fuzzIndexManifest))
	f.Add(manifest[:len(manifest)/2])
	f.Add([]byte(`{"format":"dinoclip-index/1","dim":4,"dtype":"float32","rows":0,"model":{"sha256":"` + strings.Repeat("0", 64) + `","path":"","config":{"input_dim":8,"hidden_dim":4,"output_dim":4,"num_residual_blocks":1}},"shards":[]}`))
	path := filepath.Join(dir, IndexManifestFile)
	f.Fuzz(func(t *testing.T, b []byte) {
		codectest.WriteFile(t, path, b)
		ix, err := OpenIndex(dir)
		if err != nil {
			codectest.CheckReadError(t, err, dir)
			return
		}
		defer ix.Close()
		m := ix.Manifest
		var rows int64
		for _, s := range m.Shards {
			rows += s.Rows
		}
		switch {
		case ix.Keys.Dim != m.Dim || ix.Keys.Rows() != m.Rows || rows != m.Rows:
			t.Fatalf("an index of %d rows of %d (its shards %d) opened as keys of %d rows of %d", m.Rows, m.Dim, rows, ix.Keys.Rows(), ix.Keys.Dim)
		case m.Dim != 4 || m.Rows > int64(len(images)):
			t.Fatalf("an index of %d rows of %d opened from files of %d rows of 4", m.Rows, m.Dim, len(images))
		case !IsIndex(dir):
			t.Fatal("an index opened is not IsIndex")
		}
		got := make([]float32, 4*m.Rows)
		if _, err := ix.Keys.ReadRows(got, 0, m.Rows); err != nil {
			t.Fatalf("ReadRows of an index opened: %v", err)
		}
		if !slices.Equal(got, keys[:len(got)]) {
			t.Fatalf("an index opened holds keys %v, built %v", got, keys[:len(got)])
		}
		// Naming the rows found, as search does.
		if err := ix.CheckImages(); err == nil {
			all := make([]int64, m.Rows)
			for i := range all {
				all[i] = int64(i)
			}
			names, ok, err := ix.Images(all)
			if err != nil {
				t.Fatalf("Images of an index whose lists CheckImages passed: %v", err)
			}
			if listed, needed := m.ImageLists(); ok != (listed == needed) {
				t.Fatalf("Images names rows: %v, with %d of %d shards listed", ok, listed, needed)
			}
			if ok && !slices.Equal(names, images[:m.Rows]) {
				t.Fatalf("an index opened names its rows %q, built %q", names, images[:m.Rows])
			}
			if ok && m.Rows > 0 && ix.ImagesBytes(m.Rows) <= 0 {
				t.Fatalf("ImagesBytes of an index that names its rows: %d", ix.ImagesBytes(m.Rows))
			}
		} else {
			codectest.CheckReadError(t, err, dir)
		}
		// Written again (as an append does), it reads back the same.
		again, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		codectest.WriteFile(t, path, again)
		back, err := readManifest(dir)
		if err != nil {
			t.Fatalf("a manifest accepted, written again, is refused: %v\n%s", err, again)
		}
		if b2, _ := json.MarshalIndent(back, "", "  "); !bytes.Equal(b2, again) {
			t.Fatalf("a manifest accepted, written again, reads as another:\n%s\n%s", again, b2)
		}
	})
}

// FuzzReadImagesList reads fuzzed bytes as the list of images beside a
// features file of rows rows. A list accepted has rows lines, none empty
// (of a file with rows) and none holding a NUL, with its line ends LF, and
// is one the index it is copied into takes back (checkImages, against
// the SHA-256 an append records); one refused, a message naming it.
func FuzzReadImagesList(f *testing.F) {
	f.Add([]byte("img001.jpg\nimg002.jpg\nimg003.jpg\n"), int64(3))
	f.Add([]byte("x.jpg\r\ny.jpg\r"), int64(2))
	f.Add([]byte("x.jpg\ny.jpg\n\n\n"), int64(2))
	f.Add([]byte(""), int64(0))
	f.Add([]byte("\ny\x00.jpg"), int64(2))
	f.Add([]byte("a\r\r\nb"), int64(-1))
	path := filepath.Join(f.TempDir(), "images.dino.images.txt")
	f.Fuzz(func(t *testing.T, b []byte, rows int64) {
		codectest.WriteFile(t, path, b)
		list, err := ReadImagesList(path, rows)
		if err != nil {
			codectest.CheckReadError(t, err, path)
			return
		}
		lines := int64(bytes.Count(list, []byte{'\n'}))
		if len(list) > 0 && list[len(list)-1] != '\n' {
			lines++
		}
		switch {
		case lines != rows:
			t.Fatalf("a list of %d lines accepted for %d rows: %q", lines, rows, list)
		case bytes.IndexByte(list, 0) >= 0:
			t.Fatalf("a list with a NUL accepted: %q", list)
		case !bytes.Equal(list, bytes.TrimSuffix(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\r"))):
			// (As documented: CRLF line ends become LF, and the last
			// line's CR without its LF goes.)
			t.Fatalf("the list read %q is not the file %q with LF line ends", list, b)
		}
		if rows > 0 {
			for i, name := range strings.Split(strings.TrimSuffix(string(list), "\n"), "\n") {
				if name == "" {
					t.Fatalf("a list with line %d empty accepted: %q", i+1, list)
				}
			}
		}
		sum := sha256.Sum256(list)
		sh := IndexShard{Images: "images-00000.txt", Rows: rows, ImagesSHA256: hex.EncodeToString(sum[:])}
		if err := checkImages(bytes.NewReader(list), sh); err != nil {
			t.Fatalf("a list accepted is refused by the index it is copied into: %v", err)
		}
	})
}
