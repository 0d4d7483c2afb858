package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/urfave/cli/v2"
)

// defaultProjectBatch is how many rows project converts and projects at a
// time.
const defaultProjectBatch = 4096

func projectCommand() *cli.Command {
	return &cli.Command{
		Name:      "project",
		Usage:     "project DINOv2 features into CLIP space with a trained model",
		UsageText: "dinoclip project --model CKPT --in FEATURES.npy --out EMBEDDINGS.npy [--batch N] [--float16]",
		Description: "Reads an [n, input_dim] .npy matrix of DINOv2 features (float16, float32 or float64), projects it\n" +
			"in chunks of --batch rows, and writes the [n, output_dim] model outputs as float32 (or float16\n" +
			"with --float16). The outputs are the model's, not L2-normalised. The output file is written\n" +
			"under a temporary name and renamed into place when complete (a killed run's is removed by\n" +
			"the next once a minute old, and named in a warning before). A symbolic link at --out is\n" +
			"followed: the file it leads to is replaced, the link kept. CKPT is a model.safetensors\n" +
			"file, a checkpoint directory, or a run directory (its best checkpoint, else its last;\n" +
			"best/ema.safetensors when the run picks its best from the EMA). The --out file may not be in a\n" +
			"run directory, in a run's checkpoints, in a search index or in a search's output, where it\n" +
			"would be taken for their own; an existing --out file is replaced only when it is a .npy\n" +
			"array or empty (a model there, with --model and --out swapped, is refused).\n\n" +
			"Example:\n" +
			"   dinoclip project --model runs/base --in photos.dino.npy --out photos.clip.npy",
		Flags: []cli.Flag{
			stringFlag("model", "model `CKPT`: a model.safetensors file, a checkpoint directory or a run directory", ""),
			stringFlag("in", "input `FILE`: .npy matrix [n, input_dim] of DINOv2 features", ""),
			outFlag("project", "output `FILE`: .npy matrix [n, output_dim]"),
			intFlag("batch", "project `N` rows at a time", defaultProjectBatch),
			boolFlag("float16", "write float16 instead of float32"),
			deviceFlag(),
			stringFlag("precision", precisionUsage, ""),
			configFlag(),
		},
		Before:       applyConfig,
		OnUsageError: usageError,
		Action:       runProject,
	}
}

func runProject(cCtx *cli.Context) error {
	batch, device, err := projectionFlags(cCtx, "model", "in", "out")
	if err != nil {
		return err
	}
	precision, err := devicePrecision(device, cCtx.String("precision"), precisionSetting(cCtx), false)
	if err != nil {
		return err
	}
	inPath, outPath := cCtx.String("in"), cCtx.String("out")
	if st, err := os.Stat(outPath); err == nil && st.IsDir() {
		return fmt.Errorf("--out %s is a directory; want the path of the .npy file to write", outPath)
	}
	dest, err := atomicfile.Destination(outPath)
	if err != nil {
		return err
	}
	// Replacing the input with its projection would lose the features.
	if atomicfile.SameFile(dest, inPath) {
		return fmt.Errorf("--out %s is the --in file: write the projections to another file", outPath)
	}
	if err := destPlaceError("--out", outPath, dest, "the projections"); err != nil {
		return err
	}
	// (Before the model is read and an engine opened: which file the model
	// is, is known now; loadModel says what is wrong with one that fails.)
	if model, err := checkpoint.Resolve(cCtx.String("model")); err == nil && atomicfile.SameFile(dest, model) {
		return fmt.Errorf("--out %s is the model file %s: write the projections to another file", outPath, model)
	}
	if err := otherKindError("--out", outPath, dest, "the projections", true); err != nil {
		return err
	}
	in, err := npy.OpenMatrix(inPath, "[n, input_dim]")
	if err != nil {
		return fmt.Errorf("--in: %w", err)
	}
	defer in.Close()
	shape := in.Shape()
	lm, err := loadModel(cCtx.String("model"), device, precision, cCtx.String("precision"), cCtx.App.ErrWriter)
	if err != nil {
		return err
	}
	defer lm.Engine.Close()
	c := lm.Model.Config
	n, width := shape[0], shape[1]
	if width != c.InputDim {
		return fmt.Errorf("%s: rows are %d wide, but the model %s takes %d-wide features (%v)", inPath, width, lm.Path, c.InputDim, c)
	}
	if err := checkProjectionMemory(c, device, min(batch, n)); err != nil {
		return err
	}
	warnFeaturesEncoders(cCtx.App.ErrWriter, "the model "+lm.Path, dataset.EncodersOf(lm.Model.Meta), []string{inPath})
	dt := npy.Float32
	if cCtx.Bool("float16") {
		dt = npy.Float16
	}
	hdr, err := npy.EncodeHeader(dt, []int{n, c.OutputDim})
	if err != nil {
		return fmt.Errorf("%s: %w", outPath, err)
	}
	// Beside the file written: where a link at --out leads.
	sweepLeftovers(cCtx.App.ErrWriter, dest, nil)
	var bar *countBar // (none for one batch; after the lines above, not on them)
	if n > batch {
		bar = newCountBar(cCtx, int64(n), "projecting", "rows", true)
		defer bar.finish()
	}
	ctx := cCtx.Context
	var faint, firstFaint int // (float16 rows below its normal range)
	err = atomicfile.Write(outPath, func(w io.Writer) error {
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		x := make([]float32, min(batch, n)*c.InputDim)
		y := make([]float32, min(batch, n)*c.OutputDim)
		buf := make([]byte, len(y)*dt.Size())
		for lo := 0; lo < n; lo += batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			hi := min(lo+batch, n)
			rows := hi - lo
			xs, ys := x[:rows*c.InputDim], y[:rows*c.OutputDim]
			if err := readFeatures(in, xs, lo, hi); err != nil {
				return err
			}
			if err := lm.Engine.Project(ys, xs, rows); err != nil {
				return fmt.Errorf("rows %d to %d of %s: %w", lo, hi, inPath, err)
			}
			// Finite inputs can still overflow inside the model (values
			// near float32's limit), and finite outputs can lie beyond
			// float16's range: a file of NaN or Inf is no projection.
			for i, v := range ys {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return fmt.Errorf("%s: row %d: the model's output %d is %v, not a finite number (the row's largest feature magnitude is %.3g)",
						inPath, lo+i/c.OutputDim, i%c.OutputDim, v, retrieval.MaxAbs(xs[i/c.OutputDim*c.InputDim:(i/c.OutputDim+1)*c.InputDim]))
				}
			}
			b := buf[:len(ys)*dt.Size()]
			if dt == npy.Float16 {
				var rowMax float64 // (the row's largest magnitude so far, in float32)
				var isNonzero bool // (and whether it has a value not zero in float16)
				for i, v := range ys {
					h, ok := npy.Float16Finite(v)
					if !ok {
						return fmt.Errorf("%s: row %d: the model's output %d is %g, beyond %s; write float32 (without --float16)",
							inPath, lo+i/c.OutputDim, i%c.OutputDim, v, npy.Float16Range)
					}
					binary.LittleEndian.PutUint16(b[2*i:], h)
					rowMax, isNonzero = max(rowMax, math.Abs(float64(v))), isNonzero || h&0x7fff != 0
					if i%c.OutputDim < c.OutputDim-1 {
						continue
					}
					// A whole row below float16's smallest value would be
					// zero: its direction lost, as by an overflow.
					if rowMax > 0 && !isNonzero {
						return fmt.Errorf("%s: row %d: the model's outputs are all below float16's smallest value (6e-8; the largest is %.3g), so the row would be zero; write float32 (without --float16)",
							inPath, lo+i/c.OutputDim, rowMax)
					}
					if rowMax > 0 && rowMax < 0x1p-14 {
						if faint == 0 {
							firstFaint = lo + i/c.OutputDim
						}
						faint++
					}
					rowMax, isNonzero = 0, false
				}
			} else {
				for i, v := range ys {
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
				}
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			bar.set(int64(hi))
		}
		// Judged again as it is put in place (the rename follows): a run
		// or an index may have been made around it meanwhile.
		return destPlaceError("--out", outPath, dest, "the projections")
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(cCtx.App.ErrWriter, "wrote %s: [%d, %d] %s\n", printable.String(outPath), n, c.OutputDim, dt.Name())
	if faint > 0 {
		fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: warning: %s: %d of %d rows (the first row %d) lie wholly below float16's normal range (6.1e-5): stored as subnormals they keep fewer digits, and lose direction; write float32 (without --float16)\n",
			printable.String(outPath), faint, n, firstFaint)
	}
	return nil
}

// readFeatures reads rows [lo, hi) of the feature matrix a into dst as
// float32 and refuses NaN and Inf, naming the file, row and column
// (npy.NonFiniteError: a float64 value beyond float32's range reads as
// Inf, which is said).
func readFeatures(a *npy.Array, dst []float32, lo, hi int) error {
	if err := a.ReadRows(dst, lo, hi); err != nil {
		return err
	}
	return a.CheckFinite(dst, lo)
}
