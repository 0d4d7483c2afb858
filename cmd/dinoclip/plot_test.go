package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/dinoclip/dinoclip/train"
	"gonum.org/v1/plot/plotter"
)

// TestPlotOneLoggedStep draws the loss of a run that logged one step: a
// line through one point draws nothing, so the point is drawn on its own.
// Counted are the dark pixels in the middle of the loss panel (the left
// half, away from its axes, ticks and title; its grid lines are light
// grey), where only the point can be.
func TestPlotOneLoggedStep(t *testing.T) {
	run := t.TempDir()
	metrics := `{"type":"train","step":1,"epoch":1,"loss":0.5}` + "\n"
	if err := os.WriteFile(filepath.Join(run, train.MetricsFile), []byte(metrics), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "plot.png")
	if err := plotRun(run, out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	w, h := b.Dx()/2, b.Dy() // the loss panel
	dark := 0
	for y := b.Min.Y + h/4; y < b.Min.Y+3*h/4; y++ {
		for x := b.Min.X + w/4; x < b.Min.X+3*w/4; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0x4000 && g < 0x4000 && bl < 0x4000 {
				dark++
			}
		}
	}
	if dark == 0 {
		t.Errorf("the loss panel of a run of one logged step shows no point (no dark pixel in its middle, %dx%d image)", b.Dx(), b.Dy())
	}
}

// A loss axis for one value (one logged step, or a flat curve) holds it in
// its middle, from 0: the plot's own range about it went below zero.
func TestFlatLossRange(t *testing.T) {
	for _, c := range []struct {
		loss   plotter.XYs
		lo, hi float64
		ok     bool
	}{
		{plotter.XYs{{X: 1, Y: 0.004}}, 0, 0.008, true},
		{plotter.XYs{{X: 1, Y: 0.5}, {X: 2, Y: 0.5}}, 0, 1, true},
		{plotter.XYs{{X: 1, Y: 0}}, 0, 1, true},
		{plotter.XYs{{X: 1, Y: 0.5}, {X: 2, Y: 0.4}}, 0, 0, false},
	} {
		if lo, hi, ok := flatRange(c.loss); lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("flatRange(%v) = %v, %v, %v; want %v, %v, %v", c.loss, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}
