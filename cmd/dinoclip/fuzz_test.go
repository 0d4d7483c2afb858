package main

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/codectest"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// FuzzReadConfig reads fuzzed bytes as train's --config file (readConfig,
// with the other commands' keys known, as applyConfig reads it). A file
// refused is refused with one line naming it; one read gives each key of
// train's a value of its flag's type, which altsrc (what applyConfig hands
// the values to) reads back as the file wrote it. (Not through the app:
// urfave/cli's flag lookups take about 1 ms a run.)
func FuzzReadConfig(f *testing.F) {
	for _, s := range []string{
		"data: /data/train\neval:\n  - /data/eval\nepochs: 3\nbatch: 16\nlr: 1\nhidden-dim: 8\nblocks: 1\nkeep: 5\nmodel: ignored/by/train\n",
		`{"data": "/data/train", "eval": "/data/eval", "epochs": 3, "batch": 16, "lr": 0.5, "hidden-dim": 8, "blocks": 1, "seed": 7}`,
		"seed: 18446744073709551615\nema: 0.99\nbest-from: ema\nloss: mse+infonce\ninfonce-weight: 0.5\nresume: true\nprecision: fp64\n",
		"k: &a 0101\ndevice: *a\nseed: 9007199254740993.0\nweight-decay: 1e-3\n",
		"eval: [0101, a]\nlr: 1e999\n",
		"epochs: 3\n---\nepochs: 5\n",
		"- a\n- b\n",
		"train:\n  epochs: 3\n",
		"",
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "train.yaml")
	flags := trainCommand().Flags
	others := otherFlagNames(cli.NewContext(newApp(), nil, nil))
	byName := map[string]cli.Flag{}
	for _, fl := range flags {
		for _, n := range fl.Names() {
			byName[n] = fl
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		codectest.WriteFile(t, path, b)
		values, err := readConfig(path, flags, others)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "config "+path) {
				t.Fatalf("the error does not name the file: %q", msg)
			}
			if line := errorLine(err); strings.ContainsAny(line, "\n\r\x1b") {
				t.Fatalf("the error is not one line: %q", line)
			}
			return
		}
		for k, v := range values {
			name, _ := k.(string)
			fl, ok := byName[name]
			if !ok || name == "config" {
				t.Fatalf("a config read with the key %v, no flag of train's", k)
			}
			if !fuzzTypedFor(fl, v) {
				t.Fatalf("a config read with %s: %#v, not a value of its flag %T", name, v, fl)
			}
		}
		// altsrc, which applyConfig hands them, reads each as the file
		// wrote it.
		src := altsrc.NewMapInputSource(path, values)
		for k, v := range values {
			name := k.(string)
			got, err := fuzzSourceValue(src, byName[name], name)
			if err != nil {
				t.Fatalf("altsrc refuses %s: %#v: %v", name, v, err)
			}
			if !fuzzSameValue(got, v) {
				t.Fatalf("%s: %#v in the config, %#v read by altsrc", name, v, got)
			}
		}
	})
}

// fuzzTypedFor reports whether v is a value readConfig hands altsrc for f.
func fuzzTypedFor(f cli.Flag, v any) bool {
	switch f.(type) {
	case *altsrc.IntFlag:
		_, ok := v.(int)
		return ok
	case *altsrc.Uint64Flag:
		_, ok := v.(uint64)
		return ok
	case *altsrc.Float64Flag:
		_, ok := v.(float64)
		return ok
	case *altsrc.BoolFlag:
		_, ok := v.(bool)
		return ok
	case *altsrc.StringFlag:
		_, ok := v.(string)
		return ok
	case *altsrc.StringSliceFlag:
		list, ok := v.([]any)
		for _, e := range list {
			if _, isString := e.(string); !isString {
				return false
			}
		}
		return ok
	}
	return false
}

// fuzzSourceValue is f's value (named name) as altsrc reads it from
// src, of readConfig's type.
func fuzzSourceValue(src *altsrc.MapInputSource, f cli.Flag, name string) (any, error) {
	switch f.(type) {
	case *altsrc.IntFlag:
		return src.Int(name)
	case *altsrc.Uint64Flag:
		return src.Uint64(name)
	case *altsrc.Float64Flag:
		return src.Float64(name)
	case *altsrc.BoolFlag:
		return src.Bool(name)
	case *altsrc.StringFlag:
		return src.String(name)
	case *altsrc.StringSliceFlag:
		list, err := src.StringSlice(name)
		var out []any
		for _, s := range list {
			out = append(out, s)
		}
		return out, err
	}
	return nil, fmt.Errorf("a flag of type %T", f)
}

// fuzzSameValue is a == b, floats by their bits (a NaN read back is the NaN
// written) and lists by their entries.
func fuzzSameValue(a, b any) bool {
	switch a := a.(type) {
	case float64:
		bf, ok := b.(float64)
		return ok && (a == bf || math.Float64bits(a) == math.Float64bits(bf))
	case []any:
		bl, ok := b.([]any)
		return ok && slices.Equal(a, bl)
	}
	return a == b
}
