package nn

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func TestDefaultLayoutMatchesStateDict(t *testing.T) {
	c := DefaultConfig()
	if got := c.NumParams(); got != 54_608_384 {
		t.Fatalf("parameter count %d, want 54,608,384", got)
	}
	want := [][2]any{
		{"input_proj.weight", []int{2048, 768}}, {"input_proj.bias", []int{2048}},
	}
	for i := 0; i < 6; i++ {
		p := fmt.Sprintf("residual_blocks.%d.layers.", i)
		want = append(want,
			[2]any{p + "0.weight", []int{2048, 2048}}, [2]any{p + "0.bias", []int{2048}},
			[2]any{p + "1.weight", []int{2048}}, [2]any{p + "1.bias", []int{2048}},
			[2]any{p + "3.weight", []int{2048, 2048}}, [2]any{p + "3.bias", []int{2048}},
			[2]any{p + "4.weight", []int{2048}}, [2]any{p + "4.bias", []int{2048}})
	}
	want = append(want,
		[2]any{"hidden_norm.weight", []int{2048}}, [2]any{"hidden_norm.bias", []int{2048}},
		[2]any{"output_proj.0.weight", []int{1024, 2048}}, [2]any{"output_proj.0.bias", []int{1024}},
		[2]any{"output_proj.2.weight", []int{512, 1024}}, [2]any{"output_proj.2.bias", []int{512}},
		[2]any{"layer_norm.weight", []int{512}}, [2]any{"layer_norm.bias", []int{512}})
	l := c.Layout()
	if len(l.Tensors) != len(want) {
		t.Fatalf("%d tensors, want %d", len(l.Tensors), len(want))
	}
	offset := 0
	for i, tn := range l.Tensors {
		if tn.Name != want[i][0] || !slices.Equal(tn.Shape, want[i][1].([]int)) {
			t.Errorf("tensor %d: %s %v, want %s %v", i, tn.Name, tn.Shape, want[i][0], want[i][1])
		}
		if tn.Offset != offset {
			t.Errorf("%s at offset %d, want %d (packed back to back)", tn.Name, tn.Offset, offset)
		}
		offset += tn.Size()
		if got, ok := l.Lookup(tn.Name); !ok || got.Offset != tn.Offset {
			t.Errorf("Lookup(%s) = %v, %v", tn.Name, got, ok)
		}
	}
}

func TestInitParametersDistributions(t *testing.T) {
	c := Config{InputDim: 100, HiddenDim: 64, OutputDim: 16, Blocks: 1}
	a, b := InitParameters[float64](c, 1), InitParameters[float64](c, 1)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different parameters")
	}
	if slices.Equal(a, InitParameters[float64](c, 2)) {
		t.Fatal("different seeds, same parameters")
	}
	for _, tn := range c.Layout().Tensors {
		v := View(a, tn)
		switch tn.Kind {
		case NormWeight, NormBias:
			want := 0.0
			if tn.Kind == NormWeight {
				want = 1
			}
			for _, x := range v {
				if x != want {
					t.Fatalf("%s: %v, want %v", tn.Name, x, want)
				}
			}
		default:
			bound := 1 / math.Sqrt(float64(tn.FanIn))
			lo, hi := slices.Min(v), slices.Max(v)
			if lo < -bound || hi > bound {
				t.Fatalf("%s: values in [%v, %v], outside ±%v", tn.Name, lo, hi, bound)
			}
			// A uniform sample of this size spans most of its range.
			if len(v) >= 64 && (lo > -0.8*bound || hi < 0.8*bound) {
				t.Fatalf("%s: values in [%v, %v] do not fill ±%v", tn.Name, lo, hi, bound)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{InputDim: 0, HiddenDim: 4, OutputDim: 4, Blocks: 1},
		{InputDim: 4, HiddenDim: 1, OutputDim: 4, Blocks: 1},
		{InputDim: 4, HiddenDim: 4, OutputDim: 0, Blocks: 1},
		{InputDim: 4, HiddenDim: 4, OutputDim: 4, Blocks: -1},
		{InputDim: 2, HiddenDim: 2, OutputDim: 2, Blocks: MaxBlocks + 1}, // within MaxWeights
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: no error", c)
		}
		if _, err := NewModel[float32](c); err == nil {
			t.Errorf("NewModel(%+v): no error", c)
		}
	}
	for _, c := range []Config{DefaultConfig(), {InputDim: 2, HiddenDim: 2, OutputDim: 2, Blocks: MaxBlocks}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		c    Config
		want string
	}{
		{DefaultConfig(), "768 -> 2048 x 6 residual blocks -> 1024 -> 512, 54,608,384 parameters"},
		{Config{InputDim: 8, HiddenDim: 8, OutputDim: 4, Blocks: 1}, "8 -> 8 x 1 residual blocks -> 4 -> 4, 328 parameters"},
	} {
		if got := c.c.Describe(); got != c.want {
			t.Errorf("%#v.Describe() = %q, want %q", c.c, got, c.want)
		}
	}
}

func TestGroupThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 54608384: "54,608,384", -1234567: "-1,234,567", 100000: "100,000"} {
		if got := groupThousands(n); got != want {
			t.Errorf("groupThousands(%d) = %q, want %q", n, got, want)
		}
	}
}
