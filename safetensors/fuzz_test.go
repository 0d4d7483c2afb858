package safetensors

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/dinoclip/dinoclip/internal/codectest"
)

// FuzzRead feeds arbitrary bytes to the reader. Nothing may panic, every
// accessor must work on an accepted file whose data matches its recorded
// SHA-256 (and every read of a tensor fail with ErrChecksum on one whose
// data does not), and re-writing an accepted file's tensors (in file
// order, with its metadata) must reproduce the same tensors and metadata.
func FuzzRead(f *testing.F) {
	codectest.AddFiles(f, "*.safetensors")
	f.Add(raw(`{"e":{"dtype":"F16","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(raw(`{"__metadata__":null,"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}`, make([]byte, 2)))
	f.Add(raw(`{"__metadata__":{"format":"pt","k":"\u00e9\n"},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[8,12]},"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}`, make([]byte, 12)))
	f.Add(raw(` { "a" : { "shape" : [ ] , "data_offsets" : [ 0 , 8 ] , "dtype" : "I64" } }    `, make([]byte, 8)))
	f.Add(raw(`{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"I16","shape":[1],"data_offsets":[3,5]},"c":{"dtype":"I32","shape":[1],"data_offsets":[5,9]}}`, make([]byte, 9)))
	// The tensors' SHA-256 recorded, and the same file with a byte of its
	// data changed: mutations of the data explore the refusal.
	sums := []Tensor{NewFloat32("w", []int{2}, []float32{1, -2}), NewFloat64("b", []int{1}, []float64{0.5})}
	checked, err := Marshal(sums, withSHA256(f, sums, map[string]string{"format": "pt"}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(checked)
	corrupt := append([]byte{}, checked...)
	corrupt[len(corrupt)-1] ^= 1
	f.Add(corrupt)
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := Read(data)
		if err != nil {
			return
		}
		if err := sf.verify(); err != nil {
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("verifying data in memory: %v", err)
			}
			for _, info := range sf.Tensors() {
				if _, _, err := sf.Raw(info.Name); !errors.Is(err, ErrChecksum) {
					t.Fatalf("Raw(%q) of data that does not match its SHA-256: %v", info.Name, err)
				}
			}
			return
		}
		var tensors []Tensor
		for _, info := range sf.Tensors() {
			rawb, got, err := sf.Raw(info.Name)
			if err != nil || !reflect.DeepEqual(got, info) {
				t.Fatalf("Raw(%q): %v %+v vs %+v", info.Name, err, got, info)
			}
			if isFloat(info.DType) {
				v, _, err := sf.Float32(info.Name)
				if err != nil || len(v) != info.Len() {
					t.Fatalf("Float32(%q): %v", info.Name, err)
				}
				if _, _, err := sf.Float64(info.Name); err != nil {
					t.Fatal(err)
				}
			}
			if isInt(info.DType) {
				if _, _, err := sf.Int64(info.Name); err != nil {
					t.Fatal(err)
				}
			}
			tensors = append(tensors, Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: rawb})
		}
		out, err := Marshal(tensors, sf.Metadata())
		if err != nil {
			t.Fatalf("cannot re-write an accepted file: %v", err)
		}
		sf2, err := Read(out)
		if err != nil {
			t.Fatalf("re-written file rejected: %v", err)
		}
		if !reflect.DeepEqual(sf2.Tensors(), sf.Tensors()) || len(sf2.Metadata()) != len(sf.Metadata()) {
			t.Fatalf("round trip changed the file:\n%+v\n%+v", sf.Tensors(), sf2.Tensors())
		}
		for k, v := range sf.Metadata() {
			if sf2.Metadata()[k] != v {
				t.Fatalf("metadata %q changed", k)
			}
		}
		// Writing is deterministic.
		if out2, _ := Marshal(tensors, sf2.Metadata()); !bytes.Equal(out, out2) {
			t.Fatal("Marshal is not deterministic")
		}
	})
}
