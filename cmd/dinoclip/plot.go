package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
)

// runCurves are the series of a run's metrics file.
type runCurves struct {
	loss plotter.XYs // training loss by step
	// R@5 by epoch, per evaluation set: the projection text->image and
	// image->text, then CLIP the same two ways.
	sets   []string
	recall map[string][4]plotter.XYs
}

func readCurves(runDir string) (*runCurves, error) {
	path := filepath.Join(runDir, train.MetricsFile)
	c := &runCurves{recall: map[string][4]plotter.XYs{}}
	line := 0
	err := train.ScanMetricsFile(path, func(b []byte) error {
		line++
		var rec struct {
			Type  string             `json:"type"`
			Step  int                `json:"step"`
			Epoch int                `json:"epoch"`
			Loss  float64            `json:"loss"`
			Sets  []retrieval.Report `json:"sets"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		switch rec.Type {
		case "train":
			c.loss = append(c.loss, plotter.XY{X: float64(rec.Step), Y: rec.Loss})
		case "eval":
			for _, r := range rec.Sets {
				p, okP := r.Projected.At(5)
				cl, okC := r.CLIP.At(5)
				if !okP || !okC {
					continue
				}
				s, seen := c.recall[r.Name]
				if !seen {
					c.sets = append(c.sets, r.Name)
				}
				x := float64(rec.Epoch)
				s[0] = append(s[0], plotter.XY{X: x, Y: p.TextToImagePercent})
				s[1] = append(s[1], plotter.XY{X: x, Y: p.ImageToTextPercent})
				s[2] = append(s[2], plotter.XY{X: x, Y: cl.TextToImagePercent})
				s[3] = append(s[3], plotter.XY{X: x, Y: cl.ImageToTextPercent})
				c.recall[r.Name] = s
			}
		}
		return nil
	})
	return c, err
}

// flatRange is the loss axis for losses that are all one value v (a run of
// one logged step): [0, 2v], the point in the middle; the plot's own range
// about one value, v ± 1, showed a loss of 0.004 among negative ones. ok is
// false for losses that vary, whose own range the plot takes.
func flatRange(loss plotter.XYs) (lo, hi float64, ok bool) {
	v := loss[0].Y
	for _, p := range loss[1:] {
		if p.Y != v {
			return 0, 0, false
		}
	}
	if v <= 0 { // (a loss is not negative: 0 exactly)
		return 0, 1, true
	}
	return 0, 2 * v, true
}

// plotRun draws a run's training loss and R@5 curves side by side into a
// PNG at pngPath.
func plotRun(runDir, pngPath string) error {
	c, err := readCurves(runDir)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if len(c.loss) == 0 {
		return fmt.Errorf("plot: %s has no training records", filepath.Join(runDir, train.MetricsFile))
	}
	lossPlot := plot.New()
	lossPlot.Title.Text = "training loss (unit-norm MSE)"
	lossPlot.X.Label.Text = "step"
	lossPlot.Y.Label.Text = "loss"
	line, err := plotter.NewLine(c.loss)
	if err != nil {
		return err
	}
	lossPlot.Add(line, plotter.NewGrid())
	if lo, hi, ok := flatRange(c.loss); ok {
		lossPlot.Y.Min, lossPlot.Y.Max = lo, hi
	}
	if len(c.loss) == 1 {
		// (A line through one point draws nothing: a run of one logged
		// step showed an empty panel.)
		point, err := plotter.NewScatter(c.loss)
		if err != nil {
			return err
		}
		point.GlyphStyle.Shape, point.GlyphStyle.Radius = draw.CircleGlyph{}, vg.Points(3) // (filled: seen)
		lossPlot.Add(point)
	}

	recallPlot := plot.New()
	recallPlot.Title.Text = "retrieval R@5 (%)"
	recallPlot.X.Label.Text = "epoch"
	recallPlot.Y.Label.Text = "R@5"
	// Recall lives in [0, 100]; the headroom above keeps the legend off the
	// curves.
	recallPlot.Y.Min, recallPlot.Y.Max = 0, 125
	var percent plot.ConstantTicks // (labelled to 100 only: the headroom is no recall)
	for p := 0; p <= 100; p += 20 {
		percent = append(percent, plot.Tick{Value: float64(p), Label: strconv.Itoa(p)})
	}
	recallPlot.Y.Tick.Marker = percent
	recallPlot.Legend.Top = true
	recallPlot.Add(plotter.NewGrid())
	// One colour per direction; CLIP's own recall dashed.
	palette := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	}
	labels := []string{"projection text->image", "projection image->text", "CLIP text->image", "CLIP image->text"}
	for _, name := range c.sets {
		for i, xy := range c.recall[name] {
			l, p, err := plotter.NewLinePoints(xy)
			if err != nil {
				return err
			}
			l.Color, p.Color = palette[i%2], palette[i%2]
			if i >= 2 {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			recallPlot.Add(l, p)
			recallPlot.Legend.Add(name+": "+labels[i], l, p)
		}
	}

	img := vgimg.New(vg.Points(1100), vg.Points(420))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(20), PadTop: vg.Points(10), PadBottom: vg.Points(10), PadLeft: vg.Points(10), PadRight: vg.Points(10)}
	canvases := plot.Align([][]*plot.Plot{{lossPlot, recallPlot}}, tiles, dc)
	lossPlot.Draw(canvases[0][0])
	recallPlot.Draw(canvases[0][1])
	return atomicfile.Write(pngPath, func(w io.Writer) error {
		_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
		return err
	})
}
