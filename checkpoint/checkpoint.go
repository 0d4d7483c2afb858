package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/internal/strictjson"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/safetensors"
)

// File names and format tags.
const (
	ModelFile       = "model.safetensors"
	OptimizerFile   = "optimizer.safetensors"
	ModelFormat     = "dinoclip-model/1"
	OptimizerFormat = "dinoclip-optimizer/1"
	// StateSHA256Key is the optimizer file's metadata key for the hex
	// SHA-256 of its trainer state (metadata "state"), which the tensors'
	// SHA-256 (safetensors.SHA256Key) does not cover: a digit of the logit
	// scale or of the loss sums changed on disk would otherwise be
	// trained on. A file without it (written before it was recorded) is
	// read as it is.
	StateSHA256Key = "state_sha256"
	// Float64File holds a float64 run's parameters and moments at full
	// precision, beside the float32 model that PyTorch and eval read.
	Float64File   = "float64.safetensors"
	Float64Format = "dinoclip-float64/1"
	// EMAFile is the exponential moving average of a run's weights (train
	// --ema), a model file of the checkpoint's shape: it loads into the
	// original PyTorch class as model.safetensors does.
	EMAFile = "ema.safetensors"
	// BestLink and LastLink are the links in a run directory to its best
	// and newest checkpoints.
	BestLink = "best"
	LastLink = "last"
	// RunFile is a run directory's record of its run (JSON, written by
	// train); Resolve reads one option of it, options.best_from, which is
	// BestFromEMA when the run picks its best checkpoint by the moving
	// average of its weights, BestFromRaw (or absent) when by the weights.
	RunFile     = "run.json"
	BestFromEMA = "ema"
	BestFromRaw = "raw"
	// MaxRunFileBytes bounds what is read of a RunFile. Its largest part is
	// the record of the training files, a few hundred bytes each: tens of
	// MB at the most shards a training set may have, and a run.json
	// replaced by a huge file must not fill memory before it is refused.
	MaxRunFileBytes = 256 << 20
	// CheckpointsDir is the directory of a run directory that holds its
	// checkpoints, step-NNNNNNNN each, which its links lead into.
	CheckpointsDir = "checkpoints"
)

// IsStateFormat reports whether a safetensors file's format tag names a
// checkpoint's optimizer or float64 state, of this version or another
// ("dinoclip-optimizer/2" too): a trainer's state, which no command's
// output replaces as if it were a model.
func IsStateFormat(format string) bool {
	family, _, _ := strings.Cut(format, "/")
	for _, f := range stateFormats {
		if own, _, _ := strings.Cut(f, "/"); family == own {
			return true
		}
	}
	return false
}

// MayBeStateFormat reports whether a format tag whose end is missing (a
// header cut short in it) begins as a checkpoint state's does, or names
// one already (IsStateFormat).
func MayBeStateFormat(begun string) bool {
	for _, f := range stateFormats {
		if strings.HasPrefix(f, begun) {
			return true
		}
	}
	return IsStateFormat(begun)
}

// stateFormats are the format tags of a checkpoint's trainer state.
var stateFormats = []string{OptimizerFormat, Float64Format}

// NewLinkName is the name under which a run makes the new form of its
// link (BestLink, LastLink) before renaming it into place: a run killed
// in between, at its first checkpoint, leaves its last checkpoint linked
// by this name only.
func NewLinkName(link string) string { return "." + link + ".tmp" }

// IsFile reports whether name is one of the files a checkpoint directory
// holds.
func IsFile(name string) bool {
	switch name {
	case ModelFile, OptimizerFile, Float64File, EMAFile:
		return true
	}
	return false
}

// Model is a model's shape, its parameters as one flat buffer in
// [nn.Layout] order, and the file's metadata (less safetensors.SHA256Key,
// which was verified and which WriteModel records anew: a caller that
// copies Meta into a file whose tensors differ must not carry it).
type Model struct {
	Config nn.Config
	Params []float32
	Meta   map[string]string
}

// WriteModel writes params (a flat buffer in c's layout) to path as a
// safetensors model, atomically. meta is added to the metadata; format,
// config and the tensors' SHA-256 (safetensors.SHA256Key) are set by
// WriteModel.
func WriteModel(path string, c nn.Config, params []float32, meta map[string]string) error {
	l := c.Layout()
	if len(params) != l.Size {
		return fmt.Errorf("write %s: %d parameters, the model %v has %d", path, len(params), c, l.Size)
	}
	cfg, err := json.Marshal(c)
	if err != nil {
		return err
	}
	md := map[string]string{}
	for k, v := range meta {
		md[k] = v
	}
	md["format"], md["config"] = ModelFormat, string(cfg)
	tensors := make([]safetensors.Tensor, len(l.Tensors))
	for i, t := range l.Tensors {
		tensors[i] = safetensors.NewFloat32(t.Name, t.Shape, nn.View(params, t))
	}
	return write(path, tensors, md)
}

// write writes one file of a model or checkpoint with the SHA-256 of its
// tensors in its metadata (safetensors.SHA256Key), which every read
// verifies: a flipped bit, an edited tensor or swapped offsets then fail to
// load rather than resuming or evaluating with wrong numbers.
func write(path string, tensors []safetensors.Tensor, meta map[string]string) error {
	meta, err := safetensors.WithSHA256(tensors, meta)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return safetensors.Write(path, tensors, meta)
}

// metadata is f's metadata less safetensors.SHA256Key: verified on the
// first tensor read, and not for callers to copy into other files.
func metadata(f *safetensors.File) map[string]string {
	m := f.Metadata()
	delete(m, safetensors.SHA256Key)
	return m
}

// ReadConfig reads only the model shape of a model file (its header), as
// ReadModel would determine it, and checks that the file's tensors are
// that model's: a header whose config claims a model of billions of
// weights, with no tensors behind it, is refused before its reader lays
// out memory for them.
func ReadConfig(path string) (nn.Config, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nn.Config{}, err
	}
	defer f.Close()
	c, _, err := modelLayout(f)
	return c, err
}

// modelLayout reads the model shape of a model file from its header and
// checks the file's metadata and tensors against it.
func modelLayout(f *safetensors.File) (nn.Config, *nn.Layout, error) {
	if err := checkModelMeta(f.Name(), f.Metadata()); err != nil {
		return nn.Config{}, nil, err
	}
	c, err := config(f)
	if err != nil {
		return c, nil, err
	}
	l := c.Layout()
	if err := checkTensors(f, l); err != nil {
		return c, nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return c, l, nil
}

// config is a model file's shape: from its metadata, else inferred.
func config(f *safetensors.File) (nn.Config, error) {
	var c nn.Config
	if s, ok := f.Metadata()["config"]; ok {
		var err error
		if c, err = parseConfig(s); err != nil {
			return c, fmt.Errorf("%s: metadata config %q: %w", f.Name(), s, err)
		}
	} else {
		var err error
		if c, err = InferConfig(f); err != nil {
			return c, fmt.Errorf("%s: %w", f.Name(), err)
		}
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", f.Name(), err)
	}
	// A corrupt config must not make its reader lay out thousands of
	// blocks (or count their parameters) before finding that the file
	// cannot hold them.
	if c.Blocks > len(f.Names())/tensorsPerBlock {
		return c, fmt.Errorf("%s: the config has %d residual blocks, but the file holds only %d tensors", f.Name(), c.Blocks, len(f.Names()))
	}
	return c, nil
}

// parseConfig reads a metadata config as the Python side does: a JSON
// object whose four keys, spelled exactly (encoding/json would also take
// "Input_Dim"), are integers; other keys are ignored. A key given twice is
// refused (Python's json would take the last, encoding/json too: a
// tampered config, of two readings).
func parseConfig(s string) (nn.Config, error) {
	var c nn.Config
	if err := strictjson.CheckKeys([]byte(s)); err != nil {
		return c, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &fields); err != nil {
		return c, strictjson.Describe(err)
	}
	for _, f := range []struct {
		key string
		dst *int
	}{{"input_dim", &c.InputDim}, {"hidden_dim", &c.HiddenDim}, {"output_dim", &c.OutputDim}, {"num_residual_blocks", &c.Blocks}} {
		raw, ok := fields[f.key]
		if !ok || string(raw) == "null" || json.Unmarshal(raw, f.dst) != nil { // (null would leave 0 unsaid)
			return c, fmt.Errorf("%s is missing or not an integer", f.key)
		}
	}
	return c, nil
}

// ReadModel reads a model file: one written by dinoclip, or any safetensors
// file of a ProjectorWithResiduals state_dict (float32, float16, bfloat16 or
// float64), whose shape is then inferred from its tensors. Like PyTorch's
// strict loading, a missing or unexpected tensor or a wrong shape is an
// error; so is a NaN or infinite parameter, which would only make every
// output NaN. That error is a *NonFiniteError, and the model is returned
// with it, so that a command that describes files (info) can still show
// the model of a run that diverged; every other caller refuses it.
func ReadModel(path string) (*Model, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readModel(f)
}

// TorchFormat is the format tag the safetensors library's own
// save_model/save_file helpers for PyTorch write ("pt"): a state_dict saved
// that way is a model file too.
const TorchFormat = "pt"

// checkModelMeta refuses a file whose metadata says it is something other
// than a model (an optimizer state, a float64 state, a later format), or
// carries a step or epoch that is not a count: a tampered or mixed-up file,
// whose numbers eval and info would otherwise report.
func checkModelMeta(name string, meta map[string]string) error {
	if f, ok := meta["format"]; ok && f != ModelFormat && f != TorchFormat {
		return fmt.Errorf("%s: format %q, want %q: not a model file (an optimizer or float64 state, or a newer dinoclip's format)", name, f, ModelFormat)
	}
	for _, key := range []string{"step", "epoch"} {
		if s, ok := meta[key]; ok && !isCount(s) {
			return fmt.Errorf("%s: metadata %s %q is not a count (a tampered file?)", name, key, s)
		}
	}
	// The arithmetic of the run that wrote it (train's fp32, bf16, fp64).
	switch p, ok := meta["precision"]; {
	case !ok, p == "fp32", p == "bf16", p == "fp64":
	default:
		return fmt.Errorf("%s: metadata precision %q, want fp32, bf16 or fp64 (a tampered file?)", name, p)
	}
	return nil
}

// isCount says whether s is a count as the trainer writes it: decimal
// digits only (no sign, spaces or exponent), within int.
func isCount(s string) bool {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return false
	}
	_, err := strconv.Atoi(s)
	return err == nil
}

// readModel is ReadModel on an opened file (mapped, or in memory).
func readModel(f *safetensors.File) (*Model, error) {
	c, l, err := modelLayout(f)
	if err != nil {
		return nil, err
	}
	params := make([]float32, l.Size)
	var bad *NonFiniteError
	for _, t := range l.Tensors {
		v := nn.View(params, t)
		if err := f.Float32Into(t.Name, v); err != nil {
			return nil, err
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				if bad == nil {
					info, _ := f.Info(t.Name)
					bad = &NonFiniteError{File: f.Name(), Tensor: t.Name, Index: i, Value: x, Float64: info.DType == safetensors.F64}
				}
				bad.Count++
			}
		}
	}
	m := &Model{Config: c, Params: params, Meta: metadata(f)}
	if bad != nil {
		return m, bad
	}
	return m, nil
}

// NonFiniteError is a model file with NaN or infinite weights: Count of
// them, the first at Tensor[Index]. Value is as read into float32; Float64
// is set for an F64 tensor, whose finite values beyond float32's range
// read as ±Inf (which the message says, lest the file seem to hold an
// infinity or a diverged run).
type NonFiniteError struct {
	File, Tensor string
	Index, Count int
	Value        float32
	Float64      bool
}

func (e *NonFiniteError) Error() string {
	if e.Float64 && math.IsInf(float64(e.Value), 0) {
		return fmt.Sprintf("%s: %s[%d] is %v in float32 (infinite, or an F64 value beyond float32's range): the model's weights must be finite float32 numbers", e.File, e.Tensor, e.Index, e.Value)
	}
	return fmt.Sprintf("%s: %s[%d] is %v: the model's weights must be finite numbers (a run that diverged leaves NaN weights; use an earlier checkpoint)", e.File, e.Tensor, e.Index, e.Value)
}

// tensorsPerBlock: a residual block has two Linears and two LayerNorms.
const tensorsPerBlock = 8

// checkTensors compares a file's tensors with a layout, as
// load_state_dict(strict=True) would.
func checkTensors(f *safetensors.File, l *nn.Layout) error {
	var problems []string
	for _, t := range l.Tensors {
		info, ok := f.Info(t.Name)
		switch {
		case !ok:
			problems = append(problems, "missing "+t.Name)
		case !slices.Equal(info.Shape, t.Shape):
			problems = append(problems, fmt.Sprintf("%s has shape %v, want %v", t.Name, info.Shape, t.Shape))
		}
	}
	for _, name := range f.Names() {
		if _, ok := l.Lookup(name); !ok {
			problems = append(problems, "unexpected "+name)
		}
	}
	if len(problems) > 0 {
		// (At most shownProblems of them: a header of a million stray
		// tensors made a line of megabytes.)
		if n := len(problems) - shownProblems; n > 0 {
			problems = append(problems[:shownProblems], fmt.Sprintf("and %d more", n))
		}
		return fmt.Errorf("not a ProjectorWithResiduals of this shape: %s", strings.Join(problems, "; "))
	}
	return nil
}

// shownProblems is how many of a model file's mismatches checkTensors
// names.
const shownProblems = 10

// InferConfig reads a model's shape from its tensors: input_proj.weight is
// [hidden, input], output_proj.2.weight is [output, hidden/2], and the
// residual blocks are counted.
func InferConfig(f *safetensors.File) (nn.Config, error) {
	in, ok1 := f.Info("input_proj.weight")
	out, ok2 := f.Info("output_proj.2.weight")
	if !ok1 || !ok2 || len(in.Shape) != 2 || len(out.Shape) != 2 {
		return nn.Config{}, errors.New("no model config in the metadata, and no input_proj.weight and output_proj.2.weight matrices to infer it from")
	}
	c := nn.Config{InputDim: in.Shape[1], HiddenDim: in.Shape[0], OutputDim: out.Shape[0]}
	for {
		if _, ok := f.Info(fmt.Sprintf("residual_blocks.%d.layers.0.weight", c.Blocks)); !ok {
			break
		}
		c.Blocks++
	}
	return c, nil
}

// Checkpoint is a model with the optimizer moments and the trainer's
// state (opaque JSON) needed to resume training.
type Checkpoint struct {
	Config nn.Config
	Params []float32
	Meta   map[string]string // the model file's metadata, less safetensors.SHA256Key (Save sets format, config and that key anew)
	M, V   []float32         // AdamW exp_avg and exp_avg_sq, flat
	State  []byte            // trainer state, JSON
	// Float64 is the full-precision state of a run that trains in
	// float64 (Float64File); nil for a float32 run. Params and the moments
	// above are then its values rounded to float32.
	Float64 *Float64State
	// EMA is the moving average of the weights of a run with one (EMAFile),
	// nil otherwise; EMAMeta goes into its metadata.
	EMA     []float32
	EMAMeta map[string]string
}

// notInTheWay refuses anything at dir, a checkpoint's place, but an empty
// directory (which Save replaces).
func notInTheWay(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return nil
	}
	if st.IsDir() {
		if entries, err := os.ReadDir(dir); err == nil && len(entries) == 0 {
			return nil
		}
	}
	return fmt.Errorf("checkpoint %s: %s that is not a checkpoint (it has no %s) is where this step's checkpoint goes; move it out of the run and resume",
		dir, atomicfile.Kind(st.Mode()), OptimizerFile)
}

// Float64State is a float64 run's parameters and AdamW moments, flat in
// [nn.Layout] order.
type Float64State struct {
	Params, M, V []float64
}

// Save writes ck as the checkpoint directory dir: both files go into a
// temporary directory beside it, which is then renamed to dir. A
// checkpoint already at dir is left as it is: a run saves a step once
// (again only when stopped right after saving it, with the same bits), and
// a resume removes the checkpoints after the one it continues from.
// Anything else at dir (but an empty directory) is not Save's to replace:
// it is refused, not removed (a user's index named like a step, say).
func Save(dir string, ck *Checkpoint) error {
	if _, err := os.Stat(filepath.Join(dir, OptimizerFile)); err == nil {
		return nil
	}
	if err := notInTheWay(dir); err != nil {
		return err
	}
	n := ck.Config.NumParams()
	if len(ck.M) != n || len(ck.V) != n {
		return fmt.Errorf("checkpoint %s: moments of %d and %d values, the model has %d", dir, len(ck.M), len(ck.V), n)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	// A process ended at once by a second Ctrl-C removes it (a default
	// model's checkpoint is 655 MB), rather than leave it to a later sweep.
	tmp, release, forget, err := atomicfile.MkdirTempRemovedOnExit(parent, filepath.Base(dir))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer release()
	defer forget()
	err = WriteModel(filepath.Join(tmp, ModelFile), ck.Config, ck.Params, ck.Meta)
	if err == nil {
		err = write(filepath.Join(tmp, OptimizerFile), []safetensors.Tensor{
			safetensors.NewFloat32("exp_avg", []int{n}, ck.M),
			safetensors.NewFloat32("exp_avg_sq", []int{n}, ck.V),
		}, map[string]string{"format": OptimizerFormat, "state": string(ck.State), StateSHA256Key: sha256Hex(ck.State)})
	}
	if err == nil && ck.EMA != nil {
		err = WriteModel(filepath.Join(tmp, EMAFile), ck.Config, ck.EMA, ck.EMAMeta)
	}
	if err == nil && ck.Float64 != nil {
		err = writeFloat64(filepath.Join(tmp, Float64File), n, ck.Float64)
	}
	if err == nil {
		if err := notInTheWay(dir); err != nil { // (again: the files took a while)
			os.RemoveAll(tmp)
			return err
		}
		if st, serr := os.Lstat(dir); serr == nil && st.IsDir() {
			os.Remove(dir) // empty: os.Rename replaces no directory
		}
		forget()
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	atomicfile.SyncDir(parent)
	return nil
}

// ReadState is the trainer state of the optimizer file at path, from its
// header alone (its moments are not read): refused where the state is
// missing, or where its SHA-256 is recorded (StateSHA256Key) and does not
// match it.
func ReadState(path string) ([]byte, error) {
	f, state, err := openOptimizer(path)
	if err != nil {
		return nil, err
	}
	f.Close()
	return state, nil
}

// openOptimizer opens the optimizer file at path and reads its trainer
// state as ReadState says; the caller closes the file.
func openOptimizer(path string) (*safetensors.File, []byte, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	meta := f.Metadata()
	state, ok := meta["state"]
	recorded, sha := meta[StateSHA256Key]
	switch {
	case meta["format"] != OptimizerFormat:
		err = fmt.Errorf("%s: format %q, want %q", path, meta["format"], OptimizerFormat)
	case !ok:
		err = fmt.Errorf("%s: an optimizer file without the trainer state (metadata \"state\"): damaged, or not written by dinoclip", path)
	case sha && sha256Hex([]byte(state)) != recorded:
		err = fmt.Errorf("%s: its trainer state (metadata \"state\") does not match its SHA-256 (%s): the checkpoint is damaged or was edited", path, StateSHA256Key)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, []byte(state), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Load reads the checkpoint directory dir.
func Load(dir string) (*Checkpoint, error) {
	m, err := ReadModel(filepath.Join(dir, ModelFile))
	if err != nil {
		return nil, err
	}
	if err := allFloat32(filepath.Join(dir, ModelFile)); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, OptimizerFile)
	f, state, err := openOptimizer(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := float32Tensors(f); err != nil {
		return nil, err
	}
	n := m.Config.NumParams()
	ck := &Checkpoint{Config: m.Config, Params: m.Params, Meta: m.Meta, M: make([]float32, n), V: make([]float32, n), State: state}
	for _, moment := range []struct {
		name string
		dst  []float32
	}{{"exp_avg", ck.M}, {"exp_avg_sq", ck.V}} {
		if err := f.Float32Into(moment.name, moment.dst); err != nil {
			return nil, err
		}
		for i, x := range moment.dst {
			// exp_avg_sq may be +Inf: a float32 gradient beyond about
			// 5.8e20 overflows (1-β2) g², and the run goes on (that
			// parameter's updates are 0); nothing reaches NaN or -Inf.
			if v := float64(x); math.IsNaN(v) || math.IsInf(v, -1) || (math.IsInf(v, 1) && moment.name == "exp_avg") {
				return nil, fmt.Errorf("%s: %s[%d] is %v: AdamW's moments are finite numbers (exp_avg_sq may be +Inf); the checkpoint is damaged or was edited", path, moment.name, i, x)
			}
		}
	}
	if path := filepath.Join(dir, EMAFile); fileExists(path) {
		ema, err := ReadModel(path)
		if err != nil {
			return nil, err
		}
		if err := allFloat32(path); err != nil {
			return nil, err
		}
		if ema.Config != ck.Config {
			return nil, fmt.Errorf("%s: the model is %v, the checkpoint's %v", path, ema.Config, ck.Config)
		}
		ck.EMA, ck.EMAMeta = ema.Params, ema.Meta
	}
	f64 := filepath.Join(dir, Float64File)
	if _, err := os.Stat(f64); err == nil {
		if ck.Float64, err = readFloat64(f64, ck); err != nil {
			return nil, err
		}
	}
	return ck, nil
}

// allFloat32 refuses a file of a training checkpoint holding a tensor
// that is not float32, as Save writes them all: one converted to another
// dtype (bfloat16 to save space, say) would resume from rounded values, no
// longer the run's own.
func allFloat32(path string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return float32Tensors(f)
}

func float32Tensors(f *safetensors.File) error {
	for _, t := range f.Tensors() {
		if t.DType != safetensors.F32 {
			return fmt.Errorf("%s: tensor %s is %s: a training checkpoint holds float32 tensors, as the trainer writes them (was it converted?); resuming from other values would not continue the run", f.Name(), t.Name, t.DType)
		}
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// float64Tensors are the names in Float64File.
var float64Tensors = [3]string{"params", "exp_avg", "exp_avg_sq"}

func writeFloat64(path string, n int, s *Float64State) error {
	vals := [3][]float64{s.Params, s.M, s.V}
	tensors := make([]safetensors.Tensor, 3)
	for i, v := range vals {
		if len(v) != n {
			return fmt.Errorf("float64 %s of %d values, the model has %d", float64Tensors[i], len(v), n)
		}
		tensors[i] = safetensors.NewFloat64(float64Tensors[i], []int{n}, v)
	}
	return write(path, tensors, map[string]string{"format": Float64Format})
}

// readFloat64 reads a checkpoint's Float64File and checks it against the
// float32 values beside it, which must be its values rounded: a file
// from another checkpoint or damaged is refused.
func readFloat64(path string, ck *Checkpoint) (*Float64State, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if got := f.Metadata()["format"]; got != Float64Format {
		return nil, fmt.Errorf("%s: format %q, want %q", path, got, Float64Format)
	}
	s := &Float64State{}
	dst := [3]*[]float64{&s.Params, &s.M, &s.V}
	rounded := [3][]float32{ck.Params, ck.M, ck.V}
	for i, name := range float64Tensors {
		v, shape, err := f.Float64(name)
		if err != nil {
			return nil, err
		}
		if len(shape) != 1 || len(v) != len(rounded[i]) {
			return nil, fmt.Errorf("%s: %s has shape %v, want [%d]", path, name, shape, len(rounded[i]))
		}
		for j, x := range v {
			if float32(x) != rounded[i][j] {
				return nil, fmt.Errorf("%s: %s[%d] = %v does not round to the checkpoint's float32 value %v: the file is damaged or from another checkpoint", path, name, j, x, rounded[i][j])
			}
		}
		*dst[i] = v
	}
	return s, nil
}

// Resolve finds the model file a user means by path: a model file itself,
// a checkpoint directory, or a run directory (its best checkpoint, else its
// last). The best model of a run that picks its best by the moving
// average of its weights (run.json options.best_from "ema") is the best
// checkpoint's EMAFile.
func Resolve(path string) (string, error) {
	path = atomicfile.ResolveDotDot(path) // (LINK/.. as the system takes it, before names are joined to it)
	st, err := os.Stat(path)
	if err != nil {
		if berr := brokenLink(path); berr != nil {
			return "", berr
		}
		return "", fmt.Errorf("model: %w", err)
	}
	if !st.IsDir() {
		return path, nil
	}
	// A link out of the run's checkpoints (edited, or pointed at another
	// run's) would give another run's model under this run's name: the
	// link Resolve takes is checked as it is taken.
	follow := func(link, file string) (string, error) {
		if to, outside := linkOutside(path, link); outside {
			return "", fmt.Errorf("model: %s's %s link leads to %s, not into its %s (an edited run?); name a model file to use another run's", path, link, to, CheckpointsDir)
		}
		return filepath.Join(path, link, file), nil
	}
	fromEMA, recordedBest, err := readRunRecord(path)
	if err != nil {
		return "", fmt.Errorf("model: %w", err)
	}
	// A best that is not a link (a file: a link git or a copy stored as
	// its text), or none where run.json records one that is there (a copy
	// that left the links out), is a damaged run, not one without a best
	// checkpoint: falling back to last would pick another model. (One
	// whose recorded best checkpoint is gone has no best link until an
	// evaluation beats it: train's alignBest.)
	if p := bestProblem(path, recordedBest); p != "" {
		return "", fmt.Errorf("model: %s: %s, or name a model file (for instance %s)", path, p, filepath.Join(path, LastLink, ModelFile))
	}
	if fromEMA {
		// The run's model is the moving average: without it, the raw
		// weights beside it are another model, not a stand-in.
		for _, link := range []string{BestLink, LastLink} {
			if _, err := os.Lstat(filepath.Join(path, link)); err != nil {
				continue // no best checkpoint yet: the last one's (a link, or a directory in a copied run)
			}
			ema, err := follow(link, EMAFile)
			if err != nil {
				return "", err
			}
			if !fileExists(ema) {
				if err := brokenLink(ema); err != nil {
					return "", err
				}
				return "", fmt.Errorf("model: %s picks its best checkpoint by the moving average of the weights, but %s is missing; name a model file to use another", path, ema)
			}
			return ema, nil
		}
	}
	// A best link that leads nowhere is a damaged run, not one without a
	// best checkpoint: falling back to last would pick another model.
	if best := filepath.Join(path, BestLink); atomicfile.IsLink(best) && !fileExists(filepath.Join(best, ModelFile)) {
		if err := brokenLink(filepath.Join(best, ModelFile)); err != nil {
			return "", err
		}
		return "", fmt.Errorf("model: %s's best checkpoint %s is missing; name a model file (for instance %s) to use another", path, best, filepath.Join(path, LastLink, ModelFile))
	}
	if p := filepath.Join(path, ModelFile); fileExists(p) {
		return p, nil
	} else if err := brokenLink(p); err != nil {
		return "", err
	}
	for _, link := range []string{BestLink, LastLink} {
		if fileExists(filepath.Join(path, link, ModelFile)) {
			return follow(link, ModelFile)
		}
	}
	if err := brokenLink(filepath.Join(path, LastLink, ModelFile)); err != nil {
		return "", err
	}
	model := ModelFile
	if fromEMA {
		model = EMAFile
	}
	// (A link left by a save that never finished leads nowhere.)
	if to, err := os.Readlink(filepath.Join(path, NewLinkName(LastLink))); err == nil && filepath.Dir(to) == CheckpointsDir && fileExists(filepath.Join(path, to, model)) {
		return "", fmt.Errorf("model: %s's first checkpoint is not linked as its last yet (the run was stopped while saving it): dinoclip train --resume links it, or name its model file (%s)", path, filepath.Join(path, to, model))
	}
	return "", fmt.Errorf("model: %s holds no %s, and no best or last checkpoint of a run", path, ModelFile)
}

// linkOutside reports whether run's link (BestLink or LastLink) is a
// symbolic link that leads to a directory other than one in the run's
// checkpoints (where its links lead, relative or absolute, and the
// checkpoints directory too, are resolved), and where it leads. A link
// that leads nowhere is not outside: LinkProblem and Resolve say so.
func linkOutside(run, link string) (to string, outside bool) {
	p := filepath.Join(run, link)
	to, err := os.Readlink(p)
	if err != nil {
		return "", false
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return to, false
	}
	// (The directories compared as files: EvalSymlinks gives a path as
	// relative as run's where no absolute link lies on it.)
	in, err1 := os.Stat(filepath.Dir(real))
	checkpoints, err2 := os.Stat(filepath.Join(run, CheckpointsDir))
	return to, err1 != nil || err2 != nil || !os.SameFile(in, checkpoints)
}

// LinkProblem says what is wrong with run's link (BestLink or LastLink),
// where it is a symbolic link: it leads out of the run's checkpoints
// (which Resolve refuses), or to no checkpoint. "" where it is sound, or
// no link.
func LinkProblem(run, link string) string {
	to, outside := linkOutside(run, link)
	switch {
	case outside:
		return fmt.Sprintf("it leads out of the run's %s, and the commands that load the run's model refuse it", CheckpointsDir)
	case to != "" && !fileExists(filepath.Join(run, link, ModelFile)):
		return fmt.Sprintf("it leads to no checkpoint, no %s there", ModelFile)
	}
	return ""
}

// readRunRecord reads of the run directory's run.json whether it picks
// its best checkpoint by the moving average of the weights (fromEMA), and
// the best checkpoint it records, relative to the run ("" for none).
// A run.json that is not a regular file (followed through links: a run
// kept in git-annex or DVC is links) is an error, as a named pipe would
// hang the read. A missing or unreadable one records no best, and says no
// moving average where the run keeps none; where it does (an EMAFile in
// its best or last checkpoint), which of the two models is the run's is
// unknown, and the raw weights are another model, not a stand-in: an
// error.
func readRunRecord(runDir string) (fromEMA bool, best string, err error) {
	path := filepath.Join(runDir, RunFile)
	b, err := atomicfile.ReadRegular(path, MaxRunFileBytes)
	var nr *atomicfile.NotRegularError
	if errors.As(err, &nr) {
		return false, "", err
	}
	if err == nil {
		var run struct {
			Options struct {
				BestFrom string `json:"best_from"`
			} `json:"options"`
			// (Read leniently, as Python's resolve reads it: a value of
			// another kind is no best recorded, not a run.json unreadable.)
			Best any `json:"best"`
		}
		// (A key given twice is a document each reader takes its own
		// way: edited, whatever it says; so are bytes that are not UTF-8,
		// which no run writes.)
		if err = strictjson.CheckKeys(b); err == nil {
			err = strictjson.Describe(json.Unmarshal(b, &run))
		}
		if err == nil {
			best = recordedBest(run.Best)
		}
		switch from := run.Options.BestFrom; {
		case err != nil:
		case from == BestFromEMA:
			return true, best, nil
		case from == "" || from == BestFromRaw:
			return false, best, nil
		default:
			err = fmt.Errorf("options.best_from %q is neither %q nor %q (an edited run.json?)", from, BestFromRaw, BestFromEMA)
		}
		err = fmt.Errorf("%s: %w", path, err)
	}
	for _, link := range []string{BestLink, LastLink} {
		if ema := filepath.Join(runDir, link, EMAFile); fileExists(ema) {
			return false, "", fmt.Errorf("%v: without it, whether the run's model is its weights or their moving average (%s) is unknown; name the model file", err, ema)
		}
	}
	return false, "", nil
}

// notALink says what a run's link p (its best or last) is where it
// exists as neither a link nor a directory holding a model (a copy that
// followed the links): "a file" (a link that git with core.symlinks off,
// or a copy, stored as its text), "a directory that holds no
// model.safetensors", or another kind of file. "" where it is a link
// (whether it leads anywhere: LinkProblem), such a directory, or absent.
func notALink(p string) string {
	fi, err := os.Lstat(p)
	switch {
	case err != nil || fi.Mode()&os.ModeSymlink != 0:
		return ""
	case fi.IsDir():
		if fileExists(filepath.Join(p, ModelFile)) {
			return ""
		}
		return "a directory that holds no " + ModelFile
	case fi.Mode().IsRegular():
		return "a file"
	}
	return atomicfile.Kind(fi.Mode())
}

// BestProblem says what is wrong with run's best link where the commands
// that load the run's model refuse it (Resolve), with the command that
// mends it: it is no link (notALink), or it is absent while run.json
// records a best checkpoint that is there. "" otherwise.
func BestProblem(run string) string {
	_, recorded, err := readRunRecord(run)
	if err != nil {
		recorded = ""
	}
	return bestProblem(run, recorded)
}

// bestProblem is BestProblem of run, whose run.json records the best
// checkpoint recorded ("" for none: recordedBest).
func bestProblem(run, recorded string) string {
	best := filepath.Join(run, BestLink)
	// (A model that is a link leading nowhere is there: Resolve names it.)
	_, err := os.Lstat(filepath.Join(run, recorded, ModelFile))
	there := recorded != "" && err == nil
	if what := notALink(best); what != "" {
		aside := fmt.Sprintf("mv %s %s", printable.ShellArg(best), printable.ShellArg(best+".damaged"))
		if !there {
			// (Its best checkpoint gone, a run has no best link until an
			// evaluation beats it, and its last is taken: train's alignBest.)
			return fmt.Sprintf("its %s is %s, not a link to its best checkpoint, which is gone; move it aside (%s), and its last checkpoint is used", BestLink, what, aside)
		}
		return fmt.Sprintf("its %s is %s, not a link to its best checkpoint; link it again (%s && ln -s %s %s)", BestLink, what, aside, recorded, printable.ShellArg(best))
	}
	if _, err := os.Lstat(best); !errors.Is(err, os.ErrNotExist) || !there {
		return ""
	}
	// A resume that goes back to an earlier checkpoint removes the best
	// link of a later one before it rewrites run.json (alignBest): a best
	// recorded after the last checkpoint is that, not a damaged run.
	if step, ok := stepOf(recorded); ok {
		if to, err := os.Readlink(filepath.Join(run, LastLink)); err == nil {
			if last, ok := stepOf(to); ok && step > last {
				return ""
			}
		}
	}
	return fmt.Sprintf("it records its best checkpoint %s in %s, but has no %s link (a copy that left links out?); link it again (ln -s %s %s)",
		recorded, RunFile, BestLink, recorded, printable.ShellArg(best))
}

// bestName is how run.json records a best checkpoint: relative to the run.
var bestName = regexp.MustCompile(`^` + CheckpointsDir + `/step-([0-9]{8,})$`)

// recordedBest is the checkpoint of run.json's best (its "checkpoint",
// the key matched ignoring case, as encoding/json matches a field's), ""
// where it records none a run writes (an edited one: a number, a path
// out of the run).
func recordedBest(best any) string {
	m, _ := best.(map[string]any)
	for k, v := range m {
		if s, ok := v.(string); ok && strings.EqualFold(k, "checkpoint") && bestName.MatchString(s) {
			return s
		}
	}
	return ""
}

// stepOf is the step of a checkpoint named as run.json or a link names it
// (checkpoints/step-NNNNNNNN).
func stepOf(name string) (int, bool) {
	m := bestName.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	step, err := strconv.Atoi(m[1])
	if err != nil { // (beyond int: after any checkpoint a run makes)
		return math.MaxInt, true
	}
	return step, true
}

// brokenLink is the error of the model file p where it is a symbolic link
// that cannot be opened (to a disk not mounted, a loop): not "no model".
func brokenLink(p string) error {
	to, err := os.Readlink(p)
	if err != nil {
		return nil
	}
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("model: %s is a symbolic link to %s, which cannot be opened (%v)", p, to, errors.Unwrap(err))
	}
	return nil
}
