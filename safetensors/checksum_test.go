package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// checksummed is a small file of two tensors with their SHA-256 recorded,
// and the offset of its data buffer.
func checksummed(t *testing.T) ([]byte, int) {
	t.Helper()
	tensors := []Tensor{NewFloat32("w", []int{2, 3}, []float32{1, -2, 3, -4, 5, -6}), NewFloat64("b", []int{2}, []float64{0.5, 7})}
	b, err := Marshal(tensors, withSHA256(t, tensors, map[string]string{"format": "x"}))
	must(t, err)
	f, err := Read(b)
	must(t, err)
	return b, 8 + f.HeaderLen()
}

// hexSHA256 is the hex SHA-256 of b.
func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Remedy is the end of the refusal of a file whose tensors do not match
// their recorded hash: what a tool that rewrote them must do.
const remedy = "the file is corrupt or was edited; a tool that rewrote its tensors must drop the metadata key dinoclip.sha256"

// The recorded value is the SHA-256 of the canonical listing (written out
// by hand here, as docs/FORMAT.md gives it), it survives reading and
// writing again, and a file carrying it reads.
func TestSHA256RoundTrip(t *testing.T) {
	b, start := checksummed(t)
	f, err := Read(b)
	must(t, err)
	listing := "1:w\tF32\t2,3\t0\t24\t" + hexSHA256(b[start:start+24]) + "\n" +
		"1:b\tF64\t2\t24\t40\t" + hexSHA256(b[start+24:]) + "\n"
	if got := f.Metadata()[SHA256Key]; got != hexSHA256([]byte(listing)) || f.Metadata()["format"] != "x" {
		t.Fatalf("metadata %v, want %s = %s", f.Metadata(), SHA256Key, hexSHA256([]byte(listing)))
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
	recomputed, err := Marshal(tensors, withSHA256(t, tensors, f.Metadata()))
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

// The listing's other cases: a scalar (empty shape), empty tensors (the
// same offset twice, in header order), a name with a tab, a newline and a
// multi-byte character (its length in bytes), and more tensors than
// goroutines: WithSHA256 and the reader agree with the listing, whose
// per-tensor hashes were computed in parallel.
func TestSHA256Listing(t *testing.T) {
	tensors := []Tensor{
		NewFloat64("scalar", []int{}, []float64{3}),
		NewFloat32("e1", []int{0, 4}, nil),
		NewFloat32("e2", []int{0}, nil),
		NewFloat32("é\t\n:", []int{1}, []float32{2}),
	}
	for i := range 40 {
		tensors = append(tensors, NewFloat32(fmt.Sprintf("t%d", i), []int{i + 1}, make([]float32, i+1)))
	}
	var listing strings.Builder
	off := 0
	for _, tn := range tensors {
		shape := strings.Trim(strings.ReplaceAll(fmt.Sprint(tn.Shape), " ", ","), "[]")
		fmt.Fprintf(&listing, "%d:%s\t%s\t%s\t%d\t%d\t%s\n", len(tn.Name), tn.Name, tn.DType, shape, off, off+len(tn.Data), hexSHA256(tn.Data))
		off += len(tn.Data)
	}
	if !strings.HasPrefix(listing.String(), "6:scalar\tF64\t\t0\t8\t") || !strings.Contains(listing.String(), "\n2:e2\tF32\t0\t8\t8\t") || !strings.Contains(listing.String(), "\n5:é\t\n:\tF32\t1\t8\t12\t") {
		t.Fatalf("the test's listing is off:\n%s", listing.String())
	}
	want := hexSHA256([]byte(listing.String()))
	meta := withSHA256(t, tensors, nil)
	if meta[SHA256Key] != want {
		t.Fatalf("WithSHA256 = %s, want %s", meta[SHA256Key], want)
	}
	b, err := Marshal(tensors, meta)
	must(t, err)
	f, err := Read(b)
	must(t, err)
	for _, tn := range tensors {
		if _, _, err := f.Raw(tn.Name); err != nil {
			t.Fatal(err)
		}
	}
}

// WithSHA256 leaves the caller's map alone and replaces a key already
// there (copied from the file a model was read from).
func TestWithSHA256(t *testing.T) {
	tensors := []Tensor{NewFloat32("w", []int{1}, []float32{1})}
	meta := map[string]string{SHA256Key: strings.Repeat("0", 64), "k": "v"}
	before := maps.Clone(meta)
	got := withSHA256(t, tensors, meta)
	want := hexSHA256([]byte("1:w\tF32\t1\t0\t4\t" + hexSHA256(tensors[0].Data) + "\n"))
	if !maps.Equal(meta, before) || got[SHA256Key] != want || got["k"] != "v" {
		t.Fatalf("WithSHA256 = %v (its argument now %v)", got, meta)
	}
	if got := withSHA256(t, nil, nil); got[SHA256Key] != hexSHA256(nil) {
		t.Fatalf("no tensors: %v", got)
	}
}

// swapHeader returns b with the header's first occurrences of x and y
// (the same length) exchanged, or x replaced by y when y is not there: an
// edit that keeps the header's length and every check of its layout.
func swapHeader(t *testing.T, b []byte, start int, x, y string) []byte {
	t.Helper()
	if len(x) != len(y) {
		t.Fatalf("%q and %q differ in length", x, y)
	}
	hdr := b[8:start]
	i, j := bytes.Index(hdr, []byte(x)), bytes.Index(hdr, []byte(y))
	if i < 0 {
		t.Fatalf("%q not in the header %s", x, hdr)
	}
	d := append([]byte{}, b...)
	copy(d[8+i:], y)
	if j >= 0 {
		copy(d[8+j:], x)
	}
	return d
}

// A changed byte anywhere in the data, a tensor's end replaced by zeros,
// two same-shape tensors' offsets swapped, a tensor renamed or its dtype
// changed for one of the same size: each passes every check of the header
// (that is the point) but fails every read of a tensor with ErrChecksum,
// in one line naming the file and the remedy; the header stays readable.
func TestSHA256Mismatch(t *testing.T) {
	b, start := checksummed(t)
	pair := []Tensor{NewFloat64("w", []int{2}, []float64{5, 6}), NewFloat32("p", []int{2}, []float32{1, 2}), NewFloat32("q", []int{2}, []float32{3, 4})}
	pb, err := Marshal(pair, withSHA256(t, pair, map[string]string{"format": "x"}))
	must(t, err)
	pf, err := Read(pb)
	must(t, err)
	pstart := 8 + pf.HeaderLen()
	edits := map[string]func() []byte{
		"first byte":          func() []byte { d := append([]byte{}, b...); d[start] ^= 1; return d },
		"last byte":           func() []byte { d := append([]byte{}, b...); d[len(d)-1] ^= 0x80; return d },
		"padded tensor's end": func() []byte { d := append([]byte{}, b...); clear(d[start+16 : start+24]); return d },
		"swapped offsets":     func() []byte { return swapHeader(t, pb, pstart, `"data_offsets":[16,24]`, `"data_offsets":[24,32]`) },
		"renamed":             func() []byte { return swapHeader(t, pb, pstart, `"p":`, `"q":`) },
		"retyped":             func() []byte { return swapHeader(t, pb, pstart, `"F64"`, `"I64"`) },
	}
	for name, edit := range edits {
		d := edit()
		p := filepath.Join(t.TempDir(), "corrupt.safetensors")
		must(t, os.WriteFile(p, d, 0o644))
		f, err := Open(p)
		if err != nil {
			t.Fatalf("%s: the header no longer opens: %v", name, err)
		}
		names := f.Names()
		if len(names) == 0 || f.Metadata()["format"] != "x" {
			t.Errorf("%s: the header is unreadable", name)
		}
		want := "safetensors: " + p + ": tensors do not match their recorded SHA-256: " + remedy
		for _, tensor := range append(names, names[0]) {
			_, _, err := f.Raw(tensor)
			if !errors.Is(err, ErrChecksum) || err.Error() != want {
				t.Errorf("%s: reading %s: %v, want %q", name, tensor, err, want)
			}
		}
		if _, _, err := f.Float64(names[0]); !errors.Is(err, ErrChecksum) {
			t.Errorf("%s: Float64: %v", name, err)
		}
		f.Close()
	}
}

// A file without the key reads as before: nothing to verify against.
func TestNoSHA256(t *testing.T) {
	for _, name := range []string{"model_f32.safetensors", "dtypes.safetensors"} { // the Python package's files
		f, err := Open(td(name))
		must(t, err)
		if _, ok := f.Metadata()[SHA256Key]; ok {
			t.Fatalf("%s records %s", name, SHA256Key)
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
func TestMalformedSHA256(t *testing.T) {
	tensors := []Tensor{NewFloat32("w", []int{1}, []float32{1})}
	right := withSHA256(t, tensors, nil)[SHA256Key]
	for _, v := range []string{"", "abc", strings.ToUpper(right), right + "0", right[:63], strings.Repeat("g", 64), " " + right[1:]} {
		b, err := Marshal(tensors, map[string]string{SHA256Key: v})
		must(t, err)
		_, err = Read(b)
		if !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), "is not a SHA-256 (64 lowercase hex digits)") {
			t.Errorf("%s %q: %v", SHA256Key, v, err)
		}
	}
}

// A file truncated while mapped faults while its tensors are hashed (on
// any of the goroutines): an error, not a crash, and reads stay refused;
// WithSHA256 of tensors whose data is mapped from the file (a tool copying
// them into a new file) fails too.
func TestTruncatedWhileVerifying(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.safetensors")
	var tensors []Tensor
	for i := range 8 {
		tensors = append(tensors, NewFloat32(fmt.Sprint("w", i), []int{1 << 14}, make([]float32, 1<<14)))
	}
	must(t, Write(p, tensors, withSHA256(t, tensors, nil)))
	f, err := Open(p)
	must(t, err)
	defer f.Close()
	mapped, err := Open(p)
	must(t, err)
	defer mapped.Close()
	var copies []Tensor
	for _, info := range mapped.Tensors() {
		data, _, err := mapped.Raw(info.Name)
		must(t, err)
		copies = append(copies, Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: data})
	}
	must(t, os.Truncate(p, 4096))
	if _, err := WithSHA256(copies, nil); err == nil || !strings.Contains(err.Error(), "truncated or rewritten") {
		t.Errorf("WithSHA256 of tensors mapped from a file truncated since: %v", err)
	}
	for range 2 {
		if _, _, err := f.Float32("w0"); err == nil || !strings.Contains(err.Error(), "truncated or rewritten") {
			t.Fatalf("read of a file truncated before its hash: %v", err)
		}
	}
}

// withSHA256 is WithSHA256 on tensors in memory, which cannot fault.
func withSHA256(t testing.TB, tensors []Tensor, meta map[string]string) map[string]string {
	t.Helper()
	out, err := WithSHA256(tensors, meta)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
