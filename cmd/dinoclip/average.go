package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

func averageCommand() *cli.Command {
	return &cli.Command{
		Name:      "average",
		Usage:     "average the weights of models of one architecture (a model soup)",
		UsageText: "dinoclip average --out MODEL.safetensors [--weights W1,W2,...] CKPT...",
		Description: "Writes the weighted mean of the weights of the CKPT models (model.safetensors files,\n" +
			"checkpoint directories, or run directories: their best, else last, checkpoint, its\n" +
			"ema.safetensors for a run that picks its best from the EMA) as one model that eval, project,\n" +
			"index and train --init accept, and that loads into the original PyTorch class. The models\n" +
			"must have one architecture, each given once (a run and its best checkpoint are one model).\n" +
			"Without --weights every model counts the same; --weights gives one finite, non-negative\n" +
			"weight per model, normalised by their sum (which must be positive). The mean is\n" +
			"accumulated in float64 and stored as float32. The file is written under a temporary name and\n" +
			"renamed into place when complete; its metadata names the models and weights\n" +
			"(averaged_from). The --out FILE may not be in a run directory, in a run's checkpoints, in a\n" +
			"search index or in a search's output, where it would be taken for their own; an existing one\n" +
			"is replaced only when it is a safetensors model (one cut short too) or empty (features, a\n" +
			"PyTorch file or a checkpoint's optimizer state there are refused).\n\n" +
			"Example:\n" +
			"   dinoclip average --out soup.safetensors runs/base/checkpoints/step-00001400 \\\n" +
			"       runs/base/checkpoints/step-00001600",
		Flags: []cli.Flag{
			outFlag("average", "model `FILE` to write (safetensors)"),
			stringFlag("weights", "comma-separated weights `W1,W2,...`, one per model (default: all equal)", ""),
		},
		OnUsageError: usageError,
		Action:       runAverage,
	}
}

// soupIngredient is one averaged model as the output's metadata records it.
type soupIngredient struct {
	Path         string  `json:"path"`
	Weight       float64 `json:"weight"` // normalised
	ParamsSHA256 string  `json:"params_sha256"`
}

func runAverage(cCtx *cli.Context) error {
	args := cCtx.Args().Slice()
	// (First: a flag after the models is not read, and the missing --out
	// it gave would be reported instead.) After "--" every argument is a
	// model, whatever its name: the "--" is still in args when it came
	// after the first model, else only on the app's command line.
	models, explicit := args, false
	if i := slices.Index(args, "--"); i >= 0 {
		models, args = args[:i], append(args[:i:i], args[i+1:]...)
	} else {
		explicit = slices.ContainsFunc(commandLines(cCtx), func(line []string) bool { return slices.Contains(line, "--") })
	}
	for _, a := range models {
		if strings.HasPrefix(a, "-") && !explicit {
			return fmt.Errorf("average: %q after the models: give the flags before them (dinoclip average --out FILE [--weights W,...] CKPT...), or a model named so after -- or as ./%s", a, a)
		}
	}
	if err := requireFlags(cCtx, "out"); err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("average: no models given; name the checkpoints to average after the flags")
	}
	out := cCtx.String("out")
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory; want the path of the model file to write", flagSetting(cCtx, "out", out))
	}
	dest, err := outsideRunsAndIndexes(out, "the average")
	if err != nil {
		return err
	}
	if err := otherKindError("--out", out, dest, "the average", false); err != nil {
		return err
	}
	sweepLeftovers(cCtx.App.ErrWriter, dest, nil)
	weights, err := soupWeights(cCtx.String("weights"), len(args), flagSetting(cCtx, "weights", strconv.Quote(cCtx.String("weights"))))
	if err != nil {
		return err
	}
	// Every model's shape first, from the file headers, so that a wrong
	// model is refused before any weights are read.
	paths := make([]string, len(args))
	var c nn.Config
	for i, a := range args {
		if paths[i], err = resolveModel(a); err != nil {
			return fmt.Errorf("average: %w", err)
		}
		if atomicfile.SameFile(dest, paths[i]) {
			return fmt.Errorf("--out %s is the model %s, one of the models averaged: write the average to another file", out, paths[i])
		}
		// One model twice would silently weigh double (--weights says so
		// openly).
		if j := slices.IndexFunc(paths[:i], func(p string) bool { return atomicfile.SameFile(p, paths[i]) }); j >= 0 {
			return fmt.Errorf("average: %s and %s are one model file (%s): give each model once; --weights gives one more weight", args[j], a, paths[i])
		}
		ci, err := checkpoint.ReadConfig(paths[i])
		if err != nil {
			return fmt.Errorf("average: %w", err)
		}
		if i == 0 {
			c = ci
		} else if ci != c {
			return fmt.Errorf("average: %s is %v, but %s is %v: only models of one architecture can be averaged", paths[i], ci, paths[0], c)
		}
	}
	sum := make([]float64, c.NumParams())
	from := make([]soupIngredient, len(paths))
	encoders := make([]dataset.Encoders, len(paths))
	for i, p := range paths {
		// Where it is, before it is read: a run's best or last link moves
		// on, and the record must name the file averaged.
		real := atomicfile.RealOrAbs(p)
		if !utf8.ValidString(real) { // (JSON would record another path, U+FFFD in its place)
			return fmt.Errorf("average: %q: the path is not UTF-8 text, and the average records its models' paths (averaged_from) as text: rename it", real)
		}
		m, err := checkpoint.ReadModel(real)
		if err != nil {
			return fmt.Errorf("average: %w", err)
		}
		if m.Config != c {
			return fmt.Errorf("average: %s is %v, but %s is %v: only models of one architecture can be averaged", p, m.Config, paths[0], c)
		}
		for j, x := range m.Params {
			sum[j] += weights[i] * float64(x)
		}
		// Each model's names against the earlier ones': the first that
		// differs is warned of.
		encoders[i] = dataset.EncodersOf(m.Meta)
		for j := range i {
			if encoders[j].Conflicts(encoders[i]) {
				warnEncoders(cCtx.App.ErrWriter, "model "+paths[j], encoders[j], "model "+p, encoders[i])
				break
			}
		}
		from[i] = soupIngredient{Path: real, Weight: weights[i], ParamsSHA256: train.ParamsSHA256(m.Params)}
		// A copy of a model given (another file, the same weights) would
		// weigh double as the same file would.
		if j := slices.IndexFunc(from[:i], func(f soupIngredient) bool { return f.ParamsSHA256 == from[i].ParamsSHA256 }); j >= 0 {
			return fmt.Errorf("average: %s and %s hold the same weights (a copy?): give each model once; --weights gives one more weight", args[j], args[i])
		}
	}
	params := make([]float32, len(sum))
	for j, x := range sum {
		params[j] = float32(x)
	}
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	// Judged again before it is written (reading the models took a while):
	// a run or an index may have been made around it meanwhile.
	if err := destPlaceError("--out", out, dest, "the average"); err != nil {
		return err
	}
	meta := map[string]string{"averaged_from": string(b)}
	dataset.Agreed(encoders).AddTo(meta)
	if err := checkpoint.WriteModel(out, c, params, meta); err != nil {
		return err
	}
	what := fmt.Sprintf("%d models", len(paths))
	if len(paths) == 1 {
		what = "1 model (a copy of its weights)"
	}
	// (On stderr, as project's and index's word of what they wrote: stdout
	// failing after the model is in place fails nothing.)
	fmt.Fprintf(cCtx.App.ErrWriter, "averaged %s (%s) into %s\n", what, c.Describe(), printable.String(out))
	return nil
}

// soupWeights parses --weights (n weights, finite and non-negative, with a
// positive sum) and normalises them to sum to 1; "" is n equal weights.
// Errors begin with setting, where s was given (flagSetting).
func soupWeights(s string, n int, setting string) ([]float64, error) {
	w := make([]float64, n)
	if s == "" {
		for i := range w {
			w[i] = 1 / float64(n)
		}
		return w, nil
	}
	fields := strings.Split(s, ",")
	if len(fields) != n {
		return nil, fmt.Errorf("%s: %s for %s", setting, plural.Count(len(fields), "weight", "weights"), plural.Count(n, "model", "models"))
	}
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if !isDecimalNumber(f, true) {
			return nil, fmt.Errorf("%s: weight %d (%q): write it in decimal digits (a leading 0, 0x or _ reads it another way)", setting, i+1, f)
		}
		if underflows(f) {
			return nil, fmt.Errorf("%s: weight %d (%q): %s", setting, i+1, f, underflowWhy)
		}
		x, err := strconv.ParseFloat(f, 64)
		if err != nil || !(x >= 0) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%s: weight %d (%q) must be a finite number >= 0", setting, i+1, f)
		}
		w[i] = x
	}
	// Summed once scaled by the largest, so that weights near the
	// largest float64 do not sum to infinity (their ratios are what count).
	largest := slices.Max(w)
	if largest == 0 {
		return nil, fmt.Errorf("%s: the weights are all 0; want at least one above 0", setting)
	}
	total := 0.0
	for i := range w {
		w[i] /= largest
		total += w[i]
	}
	for i := range w {
		w[i] /= total
	}
	return w, nil
}
