package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "measure text-image retrieval of a model on evaluation sets",
		UsageText: "dinoclip eval --model CKPT --eval DIR [--eval DIR ...] [--json]",
		Description: "Projects the DINOv2 image features of each evaluation set (docs/FORMAT.md) with the model and\n" +
			"reports recall@1/5/10 in both directions (CLIP_benchmark's protocol) for CLIP's own image\n" +
			"embeddings and for the projection, and the projection's R@5 as a percentage of CLIP's.\n" +
			"CKPT is a model.safetensors file, a checkpoint directory, or a run directory (its best\n" +
			"checkpoint, else its last; best/ema.safetensors when the run picks its best from the EMA).\n" +
			"--json prints a JSON document instead of the table. With --device\n" +
			"cuda the projection is also ranked on the GPU, by the exact search of dinoclip search --device\n" +
			"cuda: the rankings the CPU gives the same projections, ties included (the GPU's projection\n" +
			"itself differs from the CPU's: in fp32 in the last place, which may swap near-ties).\n\n" +
			"Example:\n" +
			"   dinoclip eval --model runs/base --eval features/mscoco-5k --eval features/flickr30k",
		Flags: []cli.Flag{
			stringFlag("model", "model `CKPT`: a model.safetensors file, a checkpoint directory or a run directory", ""),
			stringSliceFlag("eval", "evaluation set `DIR` (repeat for more sets)"),
			boolFlag("json", "print a JSON document (model file, weights' SHA-256, config, device, precision, reports) instead of the table"),
			deviceFlag(),
			stringFlag("precision", precisionUsage, ""),
			configFlag(),
		},
		Before:       applyConfig,
		OnUsageError: usageError,
		Action:       runEval,
	}
}

// evalDocument is what eval --json prints.
type evalDocument struct {
	// Model is the model file evaluated: absolute, links resolved (a
	// run's best or last link moves on while it trains), and
	// ParamsSHA256 the hash of its weights (train.ParamsSHA256), which
	// tells whether that file still holds them.
	Model        string    `json:"model"`
	ParamsSHA256 string    `json:"params_sha256"`
	Config       nn.Config `json:"config"`
	Step         *int      `json:"step,omitempty"`
	Epoch        *int      `json:"epoch,omitempty"`
	Device       string    `json:"device"`
	// Precision is the arithmetic of the projection (fp32 or bf16).
	Precision string             `json:"precision"`
	Reports   []retrieval.Report `json:"reports"`
}

func runEval(cCtx *cli.Context) error {
	if err := noArgs(cCtx); err != nil {
		return err
	}
	if err := requireFlags(cCtx, "model", "eval"); err != nil {
		return err
	}
	device := cCtx.String("device")
	if err := checkDevice(device); err != nil {
		return err
	}
	precision, err := devicePrecision(device, cCtx.String("precision"), precisionSetting(cCtx), false)
	if err != nil {
		return err
	}
	var sets []*retrieval.Set
	for _, dir := range cCtx.StringSlice("eval") {
		s, err := loadEvalSet(dir, cCtx.App.ErrWriter)
		if err != nil {
			return err
		}
		sets = append(sets, s)
	}
	if err := checkDistinctNames(sets); err != nil {
		return err
	}
	lm, err := loadModel(cCtx.String("model"), device, precision, cCtx.String("precision"), cCtx.App.ErrWriter)
	if err != nil {
		return err
	}
	defer lm.Engine.Close()
	c := lm.Model.Config
	doc := evalDocument{Model: lm.File, Config: c, Device: device, Precision: lm.Precision,
		Step: metaInt(lm.Model.Meta, "step"), Epoch: metaInt(lm.Model.Meta, "epoch")}
	if cCtx.Bool("json") {
		warnRecordedAsOther(cCtx.App.ErrWriter, "the JSON document", doc.Model)
		doc.ParamsSHA256 = train.ParamsSHA256(lm.Model.Params)
	}
	for _, s := range sets {
		if s.FeatureDim != c.InputDim || s.EmbeddingDim != c.OutputDim {
			return fmt.Errorf("evaluation set %s is %d -> %d wide (features -> embeddings), the model %s %d -> %d",
				s.Dir, s.FeatureDim, s.EmbeddingDim, lm.Path, c.InputDim, c.OutputDim)
		}
		warnEncoders(cCtx.App.ErrWriter, "the model "+lm.Path, dataset.EncodersOf(lm.Model.Meta), "evaluation set "+s.Name, s.Encoders)
	}
	// The engine's own top-k when it has one (the GPU's), else the CPU's.
	topK := retrieval.TopKOf(lm.Engine)
	for _, s := range sets {
		if err := cCtx.Context.Err(); err != nil {
			return err
		}
		r, err := s.EvaluateWith(lm.Engine.Project, topK)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Dir, err)
		}
		if r.TinyProjections > 0 {
			fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: warning: evaluation set %s: the model's projections of %d of %s %s\n",
				shown(s.Name), r.TinyProjections, plural.Count(s.Images, "image", "images"), tinyProjectionsWhy)
		}
		doc.Reports = append(doc.Reports, r)
	}
	w := cCtx.App.Writer
	if cCtx.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	return writeEvalText(w, doc)
}

// tinyProjectionsWhy says what a projection that is zero or shorter than
// 1e-12 does to a ranking (retrieval.TinyRows), for index's and eval's
// warnings.
const tinyProjectionsWhy = "are zero or shorter than 1e-12: normalisation (as PyTorch's F.normalize) cannot make them unit length, so they score below their cosines, 0 for a zero row (a model with degenerate weights?)"

func writeEvalText(w io.Writer, doc evalDocument) error {
	fmt.Fprintf(w, "model %s: %v", printable.String(doc.Model), doc.Config)
	if doc.Epoch != nil && doc.Step != nil {
		fmt.Fprintf(w, ", epoch %d, step %d", *doc.Epoch, *doc.Step)
	}
	fmt.Fprintln(w)
	for _, r := range doc.Reports {
		fmt.Fprintf(w, "%s: %d images, %d captions\n", shown(r.Name), r.CLIP.Images, r.CLIP.Captions)
	}
	fmt.Fprintln(w)
	return writeRecallTable(w, doc.Reports)
}

// metaInt reads an integer from a model's metadata, nil when absent or not
// a number.
func metaInt(meta map[string]string, key string) *int {
	s, ok := meta[key]
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil
	}
	return &n
}
