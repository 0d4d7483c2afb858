package nn

import "fmt"

// Kind says how a parameter tensor is initialised and which layer owns it.
type Kind int

const (
	LinearWeight Kind = iota // [out, in], U(-1/sqrt(in), 1/sqrt(in))
	LinearBias               // [out], U(-1/sqrt(in), 1/sqrt(in))
	NormWeight               // LayerNorm gamma, ones
	NormBias                 // LayerNorm beta, zeros
)

// Tensor is one named view of the flat parameter buffer.
type Tensor struct {
	Name   string // the original state_dict key
	Shape  []int  // PyTorch shape: Linear weights are [out, in]
	Offset int    // first element in the flat buffer
	Kind   Kind
	FanIn  int // input width of the owning Linear (0 for LayerNorm)
}

// Size is the number of elements of the tensor.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Layout is the list of parameter tensors in state_dict order, packed
// back to back in one buffer.
type Layout struct {
	Tensors []Tensor
	Size    int // total elements
	byName  map[string]int
}

// Layout returns the parameter layout of c, in the original state_dict order.
func (c Config) Layout() *Layout {
	l := &Layout{byName: map[string]int{}}
	add := func(name string, kind Kind, fanIn int, shape ...int) {
		t := Tensor{Name: name, Shape: shape, Offset: l.Size, Kind: kind, FanIn: fanIn}
		l.byName[name] = len(l.Tensors)
		l.Tensors = append(l.Tensors, t)
		l.Size += t.Size()
	}
	linear := func(name string, in, out int) {
		add(name+".weight", LinearWeight, in, out, in)
		add(name+".bias", LinearBias, in, out)
	}
	norm := func(name string, dim int) {
		add(name+".weight", NormWeight, 0, dim)
		add(name+".bias", NormBias, 0, dim)
	}
	h := c.HiddenDim
	linear("input_proj", c.InputDim, h)
	for i := 0; i < c.Blocks; i++ {
		p := fmt.Sprintf("residual_blocks.%d.layers.", i)
		linear(p+"0", h, h)
		norm(p+"1", h)
		linear(p+"3", h, h)
		norm(p+"4", h)
	}
	norm("hidden_norm", h)
	linear("output_proj.0", h, c.HeadDim())
	linear("output_proj.2", c.HeadDim(), c.OutputDim)
	norm("layer_norm", c.OutputDim)
	return l
}

// NumParams is the number of scalar parameters of c (54,608,384 for the
// default configuration).
func (c Config) NumParams() int { return c.Layout().Size }

// Lookup returns the tensor called name.
func (l *Layout) Lookup(name string) (Tensor, bool) {
	i, ok := l.byName[name]
	if !ok {
		return Tensor{}, false
	}
	return l.Tensors[i], true
}

// View returns the part of buf that holds t.
func View[T any](buf []T, t Tensor) []T { return buf[t.Offset : t.Offset+t.Size() : t.Offset+t.Size()] }
