package leconv

import (
	"math"
	"testing"
)

func TestBFloat16(t *testing.T) {
	// Every bfloat16 value round-trips, and rounding is to nearest even.
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		v := BFloat16Value(h)
		if v != v {
			if b := BFloat16Bits(v); b&0x7f80 != 0x7f80 || b&0x7f == 0 {
				t.Fatalf("NaN %#04x -> %#04x", h, b)
			}
			continue
		}
		if BFloat16Bits(v) != h {
			t.Fatalf("%#04x does not round-trip: %#04x", h, BFloat16Bits(v))
		}
	}
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, even above
		{0x3f808001, 0x3f81}, // above the tie
		{0x3f807fff, 0x3f80}, // below the tie
		{0x7f7fffff, 0x7f80}, // overflows to +Inf
		{0xff7fffff, 0xff80},
		{0x7f800000, 0x7f80},
		{0x7f800001, 0x7fc0}, // signalling NaN with a low payload stays NaN
		{0x00008000, 0x0000}, // tie in the subnormals
		{0x00018000, 0x0002},
	}
	for _, c := range cases {
		if got := BFloat16Bits(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("%#08x -> %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func TestFloat16(t *testing.T) {
	for i := 0; i < 0x7c00; i++ {
		// Reference value from the IEEE definition.
		e, m := i>>10, float64(i&0x3ff)
		want := math.Ldexp(m, -24)
		if e > 0 {
			want = math.Ldexp(1024+m, e-25)
		}
		if got := Float16Value(uint16(i)); float64(got) != want {
			t.Fatalf("%#04x = %v, want %v", i, got, want)
		}
		if Float16Bits(float32(want)) != uint16(i) || Float16Bits(float32(-want)) != uint16(i)|0x8000 {
			t.Fatalf("%v does not round-trip", want)
		}
	}
}
