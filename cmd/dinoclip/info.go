package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/internal/strictjson"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/safetensors"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "describe a model, checkpoint, run, data set, index, search output or .npy file",
		UsageText: "dinoclip info PATH",
		Description: "Looks at PATH and says what it is and what it holds:\n" +
			"  - a model file (.safetensors): its shape, parameter count, dtype, step and epoch, and\n" +
			"    whether its weights are usable (a run that diverged leaves NaN weights);\n" +
			"  - a checkpoint directory: the model, and the trainer's position and best metric so far;\n" +
			"  - a checkpoint's optimizer file: the trainer's position it holds; its float64 file (a\n" +
			"    --precision fp64 run's): the tensors it holds;\n" +
			"  - a run directory: its checkpoints, where last and best point, the best metric, its options;\n" +
			"  - a training data directory: its shards, rows, widths and dtypes;\n" +
			"  - an evaluation set directory: its images, captions and widths;\n" +
			"  - a directory that dinoclip synth --out wrote: its training data and evaluation set;\n" +
			"  - an index (dinoclip index): its rows, width, dtype, model and shards;\n" +
			"  - a search's output (dinoclip search): what was searched, k and the queries;\n" +
			"  - a .npy file: its shape and dtype (queries: the record beside them);\n" +
			"  - a record of queries (Q.json beside Q.npy, from python -m dinoclip.extract texts): its\n" +
			"    CLIP model and texts.\n\n" +
			"Example:\n" +
			"   dinoclip info runs/base",
		OnUsageError: usageError,
		Action:       runInfo,
	}
}

func runInfo(cCtx *cli.Context) error {
	if args := cCtx.Args().Slice(); len(args) > 1 && strings.HasPrefix(args[1], "-") {
		return fmt.Errorf("info: %q after PATH: give flags before it (dinoclip info [--help] PATH)", args[1])
	}
	if cCtx.Args().Len() != 1 {
		return fmt.Errorf("info: want one PATH, got %d arguments; see 'dinoclip info --help'", cCtx.Args().Len())
	}
	w := &firstErrorWriter{w: cCtx.App.Writer}
	err := describe(w, atomicfile.ResolveDotDot(cCtx.Args().First())) // (LINK/.. as the system takes it)
	if err == nil && w.err != nil {
		err = fmt.Errorf("info: writing the description: %w", w.err)
	}
	return err
}

// firstErrorWriter writes to w until a write fails, and keeps that error:
// the describers print line by line, and a full disk or a closed pipe must
// still fail the command.
type firstErrorWriter struct {
	w   io.Writer
	err error
}

func (f *firstErrorWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.w.Write(p)
	f.err = err
	return n, err
}

// describe writes what path is (see info's help) to w.
func describe(w io.Writer, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("info: %s: no such file or directory", path)
		}
		return fmt.Errorf("info: %w", err)
	}
	if !st.IsDir() {
		if isNPY(path) {
			return infoNPY(w, path)
		}
		switch format, _ := safetensorsFormat(path); format {
		case checkpoint.OptimizerFormat:
			return infoOptimizer(w, path)
		case checkpoint.Float64Format:
			return infoFloat64(w, path)
		default:
			if checkpoint.IsStateFormat(format) {
				return fmt.Errorf("info: %s is a checkpoint's trainer state in the format %q, which this dinoclip does not read (it reads %s and %s): one written by another version of dinoclip?", path, format, checkpoint.OptimizerFormat, checkpoint.Float64Format)
			}
		}
		if ok, err := infoQueriesRecord(w, path); ok {
			return err
		}
		err := infoModel(w, path)
		if err != nil && !strings.HasSuffix(path, ".safetensors") {
			if dir := describedWhole(path); dir != "" {
				return fmt.Errorf("info: %s is a file of %s, which info describes as a whole: dinoclip info %s", path, dir, shown(printable.ShellArg(dir)))
			}
			err = fmt.Errorf("info: %s is no file dinoclip describes (a .npy array, a model .safetensors, a record of queries Q.json beside Q.npy); read as a model: %w", path, err)
		}
		return err
	}
	has := func(name string) bool { _, err := os.Lstat(filepath.Join(path, name)); return err == nil }
	// A data set's directory is one though it holds a manifest.json or a
	// search.json too (another tool's, or a search written into it): no
	// index or search output holds a set's files.
	dataSet := retrieval.HoldsSet(path) || train.HoldsShards(path)
	switch {
	case has(retrieval.IndexManifestFile) && !dataSet:
		return infoIndex(w, path)
	case has(searchInfoFile) && !dataSet:
		return infoSearch(w, path)
	case isRunDir(path):
		return infoRun(w, path)
	case has(checkpoint.ModelFile):
		return infoCheckpoint(w, path)
	case retrieval.HoldsSet(path):
		return infoEvalSet(w, path, false)
	}
	if train.HoldsFeaturesOnly(path) {
		return infoFeatures(w, path)
	}
	if train.HoldsShards(path) {
		return infoData(w, path, false)
	}
	if train.HoldsShards(filepath.Join(path, dataset.TrainDir)) || has(filepath.Join(dataset.EvalDir, retrieval.ImageFeaturesFile)) || has(dataset.UnfinishedFile) {
		return infoSynthOut(w, path)
	}
	if err := dataset.CheckStaging(path); err != nil { // a data set not moved in yet
		return fmt.Errorf("info: %w", err)
	}
	if parent := filepath.Dir(path); dataset.HasUnfinished(parent) {
		return fmt.Errorf("info: %s holds no data set yet: a dinoclip synth or demo into %s has not finished (it is running, or was interrupted: run it again)", path, parent)
	}
	if retrieval.IsUnfinishedIndex(path) {
		return fmt.Errorf("info: %s is an index whose first append is running or was interrupted (no %s yet): wait for it, or run the dinoclip index again, which removes its files and indexes them again", path, retrieval.IndexManifestFile)
	}
	hint := ""
	entries, _ := os.ReadDir(path)
	arg := func(p string) string { return shown(printable.ShellArg(p)) }
	switch run := filepath.Dir(filepath.Clean(path)); {
	case filepath.Base(filepath.Clean(path)) == train.CheckpointsDir && isRunDir(run):
		hint = fmt.Sprintf("; it is the checkpoints directory of the run %s, which info describes (dinoclip info %s), as it does each checkpoint in it", run, arg(run))
	case has(demoMarker):
		hint = fmt.Sprintf("; it is a dinoclip demo's output, whose run and data info describes (dinoclip info %s, dinoclip info %s)", arg(filepath.Join(path, "run")), arg(filepath.Join(path, "data")))
	case has(benchTextFile) && has(benchJSONFile):
		hint = fmt.Sprintf("; it holds a dinoclip bench's report, to read in %s", filepath.Join(path, benchTextFile))
	default:
		if i := slices.IndexFunc(entries, func(e os.DirEntry) bool { return strings.HasSuffix(e.Name(), ".npy") }); i >= 0 {
			hint = fmt.Sprintf("; it holds .npy files, which info describes one at a time (dinoclip info %s)", arg(filepath.Join(path, entries[i].Name())))
		}
	}
	return fmt.Errorf("info: %s is not a run, checkpoint, training data, evaluation set, index or search output directory (see docs/FORMAT.md)%s", path, hint)
}

// describedWhole is the directory of path where path is a record that
// directory's writer keeps beside its data, which info describes with the
// directory as a whole (an evaluation set's eval.json, an index's
// manifest.json, a search's results.txt, a run's run.json or metrics.jsonl,
// an extraction's extract.json, the lists of images of an index's shards
// and of extracted features); "" elsewhere. Only those names: another
// file there (a user's .pt beside its converted model) is read as it is,
// and told as what it is. (Read as a model, such a record fails on a
// safetensors header length made of its first bytes, which tells its
// reader nothing.)
func describedWhole(path string) string {
	dir, name := filepath.Dir(path), filepath.Base(path)
	shardImages := strings.HasPrefix(name, "images-") && strings.HasSuffix(name, ".txt") // (an index shard's images-N.txt)
	switch {
	case (name == retrieval.IndexManifestFile || name == retrieval.IndexLockFile || shardImages) && retrieval.IsIndex(dir),
		(name == searchInfoFile || name == searchResultsFile || name == searchImagesFile) && fileExists(filepath.Join(dir, searchInfoFile)),
		(name == train.RunFile || name == train.MetricsFile || name == train.LockFile) && isRunDir(dir),
		name == dataset.EvalInfoFile && retrieval.HoldsSet(dir),
		(name == dataset.ExtractRecordFile || strings.HasSuffix(name, ".images.txt")) && (train.HoldsShards(dir) || train.HoldsFeaturesOnly(dir)):
		return dir
	}
	return ""
}

// isRunDir reports whether dir holds a training run: a last or best link
// (or, in a copied run, directory), run.json or a checkpoints directory.
func isRunDir(dir string) bool {
	for _, name := range []string{checkpoint.LastLink, checkpoint.BestLink, train.RunFile, train.CheckpointsDir} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// holdsRun reports whether dir is a run directory by what only a run
// writes there, its run.json or its last or best link, or by a trainer
// holding its lock (a run starting, before its run.json): where an output
// may not go (search's, project's, average's). isRunDir, for info to take
// a damaged run for one, is met by any of a run's names, so a directory of
// search outputs, one of them named best, was a run to it.
func holdsRun(dir string) bool {
	if _, err := os.Lstat(filepath.Join(dir, train.RunFile)); err == nil {
		return true
	}
	if _, training := train.LockHolder(dir); training {
		return true
	}
	return atomicfile.IsLink(filepath.Join(dir, checkpoint.LastLink)) || atomicfile.IsLink(filepath.Join(dir, checkpoint.BestLink))
}

// infoIndex describes an index (dinoclip index), opened as a search opens
// it, so that a damaged one is said to be.
func infoIndex(w io.Writer, dir string) error {
	ix, err := retrieval.OpenIndex(dir)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	defer ix.Close()
	if err := ix.CheckImages(); err != nil {
		return fmt.Errorf("info: %w", err)
	}
	m := ix.Manifest
	fmt.Fprintf(w, "%s: search index\n", printable.String(dir))
	// (As written: info reads no row; search refuses one that is not.)
	fmt.Fprintf(w, "  rows: %d of %d %s values, written unit length\n", m.Rows, m.Dim, m.DType)
	fmt.Fprintf(w, "  model: %s (sha256 %s)\n", shown(m.Model.Path), m.Model.SHA256)
	writeTrainedOn(w, m.Model.Encoders)
	fmt.Fprintf(w, "  shards: %d\n", len(m.Shards))
	for _, sh := range m.Shards {
		if sh.Rows == 0 {
			fmt.Fprintf(w, "  %s: no rows, from %s\n", sh.Keys, shown(sh.Source.Path))
			continue
		}
		fmt.Fprintf(w, "  %s: ids %d to %d, from %s\n", sh.Keys, sh.FirstID, sh.FirstID+sh.Rows-1, shown(sh.Source.Path))
	}
	return nil
}

// infoSearch describes a search's output directory (dinoclip search).
func infoSearch(w io.Writer, dir string) error {
	b, err := atomicfile.ReadRegular(filepath.Join(dir, searchInfoFile), maxSearchInfoBytes)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	var si searchInfo
	if err := strictjson.Unmarshal(b, &si); err != nil {
		return fmt.Errorf("info: %s: %w", filepath.Join(dir, searchInfoFile), err)
	}
	if si.K < 1 {
		return fmt.Errorf("info: %s: k %d, not a search's record", filepath.Join(dir, searchInfoFile), si.K)
	}
	// Both answers, of one shape: ids and their scores, k a query. (Each
	// is judged alone first, so that the message names the file that is
	// wrong; where their rows differ, search.json cannot tell which.)
	var shape []int
	for _, f := range []struct {
		name string
		dt   npy.DType
	}{{searchIDsFile, npy.Int64}, {searchScoresFile, npy.Float32}} {
		a, err := npy.Open(filepath.Join(dir, f.name))
		if err != nil {
			return fmt.Errorf("info: %w", err)
		}
		sh, dt := a.Shape(), a.DType()
		a.Close()
		switch {
		case len(sh) != 2 || sh[1] != si.K || dt != f.dt:
			return fmt.Errorf("info: %s: %v array of %s, but %s says k %d (ids int64 and scores float32, one shape)", filepath.Join(dir, f.name), sh, dt.Name(), searchInfoFile, si.K)
		case shape != nil && shape[0] != sh[0]:
			return fmt.Errorf("info: %s: %s has %s and %s %s, where they answer the same queries (one of them replaced or damaged)", dir, searchIDsFile, plural.Count(shape[0], "row", "rows"), searchScoresFile, plural.Count(sh[0], "row", "rows"))
		}
		shape = sh
	}
	fmt.Fprintf(w, "%s: search output\n", printable.String(dir))
	fmt.Fprintf(w, "  top-%d of %s for %s, on %s in %.3g s\n", si.K, plural.Count(si.Rows, "row", "rows"), plural.Count(shape[0], "query", "queries"), shown(si.Device), si.Seconds)
	if si.CPUFallback != "" {
		fmt.Fprintf(w, "  ran on the CPU: the %s search failed its check (%s)\n", shown(si.Device), shownText(si.CPUFallback))
	}
	if si.Unchecked != "" {
		fmt.Fprintf(w, "  UNCHECKED: the %s search failed its check (%s) and ran anyway, as DINOCLIP_CUDA_CHECK=warn asked: its answer is unproven\n", shown(si.Device), shownText(si.Unchecked))
	}
	fmt.Fprintf(w, "  index: %s\n", shown(si.Index))
	fmt.Fprintf(w, "  queries: %s\n", shown(si.Queries))
	if si.Model != "" {
		fmt.Fprintf(w, "  model sha256: %s\n", shown(si.Model))
	}
	fmt.Fprintf(w, "  %s: [%d, %d] int64 ids, best first; %s: their cosines\n", searchIDsFile, shape[0], shape[1], searchScoresFile)
	for _, f := range []struct{ name, what string }{{searchImagesFile, "the image of each id"}, {searchResultsFile, "each query's answer, for people"}} {
		if _, err := os.Lstat(filepath.Join(dir, f.name)); err == nil {
			fmt.Fprintf(w, "  %s: %s\n", f.name, f.what)
		}
	}
	return nil
}

// infoSynthOut describes a directory laid out as dinoclip synth --out writes
// it: training data in DIR/train, an evaluation set in DIR/eval.
func infoSynthOut(w io.Writer, dir string) error {
	fmt.Fprintf(w, "%s: data directory (training data in %s/, an evaluation set in %s/, as dinoclip synth writes them)\n",
		printable.String(dir), dataset.TrainDir, dataset.EvalDir)
	// What an unfinished run has written so far is described, though
	// readers refuse it (dataset.CheckUnfinished).
	unfinished := dataset.HasUnfinished(dir)
	if unfinished {
		fmt.Fprintf(w, "  unfinished: a dinoclip synth or demo into %s is running, or was interrupted (run it again); what it has written so far:\n", printable.String(dir))
	}
	if tr := filepath.Join(dir, dataset.TrainDir); train.HoldsShards(tr) || dataset.CheckStaging(tr) != nil {
		if err := infoData(w, tr, unfinished); err != nil {
			return err
		}
	}
	if ev := filepath.Join(dir, dataset.EvalDir); fileExists(filepath.Join(ev, retrieval.ImageFeaturesFile)) {
		if err := infoEvalSet(w, ev, unfinished); err != nil {
			return err
		}
	}
	return nil
}

func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

// isNPY reports whether the file at path starts with the .npy magic, or
// is named as a .npy (npy.Open then says what is wrong with it).
func isNPY(path string) bool {
	return hasNPYMagic(path) || strings.HasSuffix(path, ".npy")
}

// hasNPYMagic reports whether the file at path starts with the .npy magic.
// Only a regular file is read (OpenToRead: opening a named pipe would wait
// for a writer, forever): anything else has none (and npy.Open and the
// model readers refuse what is not a regular file).
func hasNPYMagic(path string) bool {
	f, err := atomicfile.OpenToRead(path)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 6)
	_, err = io.ReadFull(f, magic)
	return err == nil && bytes.Equal(magic, []byte("\x93NUMPY"))
}

func infoNPY(w io.Writer, path string) error {
	a, err := npy.Open(path)
	if err != nil {
		return err
	}
	defer a.Close()
	h := a.Header()
	fmt.Fprintf(w, "%s: .npy array\n", printable.String(path))
	fmt.Fprintf(w, "  shape: %v\n", shapeString(h.Shape))
	fmt.Fprintf(w, "  dtype: %s (%s)\n", h.DType.Name(), h.DType)
	if len(h.Shape) == 2 {
		fmt.Fprintf(w, "  rows: %d of %d values\n", h.Shape[0], h.Shape[1])
	}
	fmt.Fprintf(w, "  data: %s\n", byteSize(int64(h.DataSize())))
	// Queries embedded by python -m dinoclip.extract texts: their record.
	if rec, err := dataset.ReadQueriesRecord(path); err != nil {
		fmt.Fprintf(w, "  queries record: not usable: %s\n", printable.String(err.Error()))
	} else if rec != nil {
		writeQueriesRecord(w, dataset.QueriesRecordPath(path), rec)
	}
	return nil
}

// writeQueriesRecord describes the record of queries at path.
func writeQueriesRecord(w io.Writer, path string, rec *dataset.QueriesRecord) {
	texts := "no texts"
	if rec.Texts != nil {
		texts = plural.Count(len(rec.Texts), "text", "texts")
	}
	fmt.Fprintf(w, "  queries record %s: %s, %s\n", shown(path), rec.Encoders, texts)
}

// infoQueriesRecord describes the record beside queries (Q.json beside
// Q.npy, as python -m dinoclip.extract texts writes it); ok is false when
// path is no such record.
func infoQueriesRecord(w io.Writer, path string) (ok bool, err error) {
	stem, isJSON := strings.CutSuffix(path, ".json")
	if !isJSON {
		return false, nil
	}
	queries := stem + ".npy"
	rec, err := dataset.ReadQueriesRecord(queries)
	if rec == nil && err == nil {
		return false, nil
	}
	fmt.Fprintf(w, "%s: record of the queries %s (python -m dinoclip.extract texts)\n", printable.String(path), queries)
	if err != nil {
		return true, fmt.Errorf("info: %w", err)
	}
	writeQueriesRecord(w, path, rec)
	return true, nil
}

func shapeString(shape []int) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		s[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// infoModel describes a model file, under a title line.
func infoModel(w io.Writer, path string) error {
	var buf bytes.Buffer
	if err := writeModelInfo(&buf, path); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: model\n", printable.String(path))
	_, err := buf.WriteTo(w)
	return err
}

// safetensorsFormat is the format its metadata gives a safetensors file
// at path (a checkpoint's optimizer or float64 state, or a model; "" for
// one without, as a PyTorch-made model), or why path is none (Open's
// error: safetensors.ErrCutShort or ErrDataCutShort for one cut short).
func safetensorsFormat(path string) (format string, err error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return f.Metadata()["format"], nil
}

// infoOptimizer describes a checkpoint's optimizer file: the trainer's
// position it holds (the model is its neighbour, model.safetensors).
func infoOptimizer(w io.Writer, path string) error {
	st, err := readStateFile(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: a checkpoint's optimizer state (AdamW moments and the trainer's position; the model is %s beside it)\n", printable.String(path), checkpoint.ModelFile)
	writeState(w, st)
	return nil
}

// infoFloat64 describes a checkpoint's float64 state (a --precision fp64
// run's): the weights and AdamW moments in float64, whose float32
// rounding the model and optimizer files beside it hold.
func infoFloat64(w io.Writer, path string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	defer f.Close()
	fmt.Fprintf(w, "%s: a checkpoint's float64 state (a --precision fp64 run's weights and AdamW moments; %s and %s beside it hold them rounded to float32)\n", printable.String(path), checkpoint.ModelFile, checkpoint.OptimizerFile)
	ts := f.Tensors()
	for _, t := range ts[:min(len(ts), shownTensors)] {
		fmt.Fprintf(w, "  %s: %s %v\n", shown(t.Name), t.DType, t.Shape)
	}
	if n := len(ts) - shownTensors; n > 0 {
		fmt.Fprintf(w, "  and %s more (the file holds three: an edited one?)\n", plural.Count(n, "tensor", "tensors"))
	}
	return nil
}

// shownTensors is how many of a float64 state's tensors info lists.
const shownTensors = 10

// writeModelInfo writes the indented description of a model file.
func writeModelInfo(w io.Writer, path string) error {
	m, unusable, err := readModelToDescribe(path)
	if err != nil {
		return err
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var dtypes []string
	for _, t := range f.Tensors() {
		if !slices.Contains(dtypes, string(t.DType)) {
			dtypes = append(dtypes, string(t.DType))
		}
	}
	c := m.Config
	format := m.Meta["format"]
	if format == "" {
		format = "a ProjectorWithResiduals state_dict (shape inferred from its tensors)"
	}
	fmt.Fprintf(w, "  format: %s\n", format)
	fmt.Fprintf(w, "  model: %v\n", c)
	fmt.Fprintf(w, "  config: input_dim %d, hidden_dim %d, output_dim %d, num_residual_blocks %d\n", c.InputDim, c.HiddenDim, c.OutputDim, c.Blocks)
	fmt.Fprintf(w, "  parameters: %d (%s, %d tensors)\n", c.NumParams(), strings.Join(dtypes, ", "), len(f.Tensors()))
	if s, e := metaInt(m.Meta, "step"), metaInt(m.Meta, "epoch"); s != nil || e != nil {
		trained := fmt.Sprintf("epoch %s, optimizer step %s", intOr(e), intOr(s))
		if p, ok := m.Meta["precision"]; ok {
			trained += ", in " + p
		}
		fmt.Fprintf(w, "  trained: %s\n", trained)
	}
	writeTrainedOn(w, dataset.EncodersOf(m.Meta))
	if unusable != "" {
		fmt.Fprintf(w, "  weights: %s\n", unusable)
	}
	if v, ok := m.Meta["metrics"]; ok {
		writeMetrics(w, v, "")
	}
	if v, ok := m.Meta["averaged_from"]; ok {
		var from []soupIngredient
		if err := json.Unmarshal([]byte(v), &from); err != nil {
			fmt.Fprintf(w, "  averaged_from: unreadable (%s)\n", printable.String(err.Error()))
		} else {
			fmt.Fprintf(w, "  averaged from %s (dinoclip average):\n", plural.Count(len(from), "model", "models"))
			for _, f := range from {
				fmt.Fprintf(w, "    %s  weight %.4g\n", shown(f.Path), f.Weight)
			}
		}
	}
	return nil
}

// readModelToDescribe reads a model as checkpoint.ReadModel does, but
// takes one with NaN or infinite weights too, saying so in unusable: info
// is where the user of a run that diverged looks at its checkpoints, and
// their step and metrics are what tell which one to go back to.
func readModelToDescribe(path string) (m *checkpoint.Model, unusable string, err error) {
	m, err = checkpoint.ReadModel(path)
	var nf *checkpoint.NonFiniteError
	if errors.As(err, &nf) && m != nil {
		verb := "are"
		if nf.Count == 1 {
			verb = "is"
		}
		cause := "a run that diverged leaves them: use an earlier checkpoint"
		if nf.Float64 && math.IsInf(float64(nf.Value), 0) {
			// (Finite in the file: written by something else than a run.)
			cause = "infinite in float32, or F64 values beyond float32's range, which the model's float32 weights cannot hold"
		}
		return m, fmt.Sprintf("NOT USABLE: %d of the %d weights %s NaN or infinite (the first: %s[%d] = %v); %s",
			nf.Count, len(m.Params), verb, nf.Tensor, nf.Index, nf.Value, cause), nil
	}
	return m, "", err
}

// writeMetrics writes the evaluation reports that training stored in a
// model's metadata as the recall table eval prints, indented under the
// model's description.
func writeMetrics(w io.Writer, metaValue, of string) {
	var reports []retrieval.Report
	switch err := json.Unmarshal([]byte(metaValue), &reports); {
	case err == nil && reports != nil && len(reports) == 0: // "[]"
		fmt.Fprintf(w, "  metrics%s: none (trained without an evaluation set)\n", of)
		return
	case err != nil || len(reports) == 0:
		fmt.Fprintf(w, "  metrics%s: unreadable (not the evaluation reports dinoclip train stores: %d bytes)\n", of, len(metaValue))
		return
	}
	fmt.Fprintf(w, "  metrics%s at this checkpoint:\n", of)
	var table strings.Builder
	writeRecallTable(&table, reports)
	for line := range strings.Lines(table.String()) {
		fmt.Fprint(w, "    ", line)
	}
}

func intOr(p *int) string {
	if p == nil {
		return "?"
	}
	return fmt.Sprint(*p)
}

// readState reads the trainer state saved beside a checkpoint's model.
func readState(dir string) (*train.State, error) {
	return readStateFile(filepath.Join(dir, checkpoint.OptimizerFile))
}

// readStateFile reads the trainer state of an optimizer file.
func readStateFile(path string) (*train.State, error) {
	state, err := checkpoint.ReadState(path)
	if err != nil {
		return nil, err
	}
	var st train.State
	if err := json.Unmarshal(state, &st); err != nil {
		return nil, fmt.Errorf("%s: trainer state: %w", path, strictjson.Describe(err))
	}
	return &st, nil
}

func describeBest(b *train.Best) string {
	return fmt.Sprintf("%s = %.6g after epoch %d (step %d), %s", shown(b.Metric), b.Value, b.Epoch, b.Step, shown(b.Checkpoint))
}

func writeState(w io.Writer, st *train.State) {
	if st.Step >= st.Schedule.TotalSteps && st.PendingEval != nil {
		fmt.Fprintf(w, "  progress: trained, %s, %s; the last evaluation is still to do\n",
			plural.Count(st.Epoch, "epoch", "epochs"), plural.Count(st.Step, "optimizer step", "optimizer steps"))
	} else if st.Step >= st.Schedule.TotalSteps {
		fmt.Fprintf(w, "  progress: finished, %s, %s\n",
			plural.Count(st.Epoch, "epoch", "epochs"), plural.Count(st.Step, "optimizer step", "optimizer steps"))
	} else {
		fmt.Fprintf(w, "  progress: %d of %s complete, %s into epoch %d; step %d of %d\n",
			st.Epoch, plural.Count(st.Options.Epochs, "epoch", "epochs"), plural.Count(st.Batch, "batch", "batches"), st.Epoch+1, st.Step, st.Schedule.TotalSteps)
	}
	o := st.Options
	every := "checkpoints at epoch ends" // (--checkpoint-every 0)
	if o.CheckpointEvery > 0 {
		every = "checkpoint every " + plural.Count(o.CheckpointEvery, "step", "steps") + " and at epoch ends"
	}
	fmt.Fprintf(w, "  options: batch %d, max lr %g, weight decay %g, seed %d, %s, keep %d, precision %s",
		o.Batch, o.MaxLR, o.AdamW.WeightDecay, o.Seed, every, o.Keep, o.PrecisionMode())
	if o.EMA != 0 {
		fmt.Fprintf(w, ", moving average of the weights with decay %g, best from %s", o.EMA, o.BestFromMode())
	}
	if o.LossName() != nn.LossMSE {
		fmt.Fprintf(w, ", loss %s", o.LossName())
		if o.InfoNCEWeight != 0 {
			fmt.Fprintf(w, " (InfoNCE weight %g)", o.InfoNCEWeight)
		}
	}
	if st.LogitScale != nil {
		scale := math.Min(math.Exp(st.LogitScale.Value), nn.MaxLogitScale)
		fmt.Fprintf(w, ", logit scale %.4g (temperature %.4g)", scale, 1/scale)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  training data: %d rows, %d -> %d\n", st.Data.Rows, st.Data.InputDim, st.Data.OutputDim)
	if st.Best != nil {
		fmt.Fprintf(w, "  best so far: %s\n", describeBest(st.Best))
	}
	if st.PendingEval != nil {
		fmt.Fprintf(w, "  evaluation of epoch %d pending: the run was stopped during it; dinoclip train --resume does it first\n", st.Epoch)
	}
}

func infoCheckpoint(w io.Writer, dir string) error {
	// A model file that is none (a .npy copied there) is refused before
	// the directory is called a checkpoint.
	if _, err := checkpoint.ReadConfig(filepath.Join(dir, checkpoint.ModelFile)); err != nil {
		return err
	}
	var st *train.State
	if _, err := os.Stat(filepath.Join(dir, checkpoint.OptimizerFile)); err == nil {
		if st, err = readState(dir); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: training checkpoint\n", printable.String(dir))
	} else {
		fmt.Fprintf(w, "%s: checkpoint (a model only, no %s to resume from)\n", printable.String(dir), checkpoint.OptimizerFile)
	}
	// (First: what follows describes files of two checkpoints.)
	if st != nil {
		if err := train.StepsAgree(dir); err != nil {
			fmt.Fprintf(w, "  NOT ONE CHECKPOINT (a resume from it is refused): %s\n", printable.String(err.Error()))
		}
	}
	if err := writeModelInfo(w, filepath.Join(dir, checkpoint.ModelFile)); err != nil {
		return err
	}
	// The evaluation of the moving average, which picks a --best-from ema
	// run's best checkpoint: the metrics above are of the raw weights.
	if ema := writeEMAWeights(w, dir, ""); ema != nil {
		line := "  moving average: " + checkpoint.EMAFile
		if d, ok := ema.Meta["ema_decay"]; ok {
			line += ", decay " + shown(d)
		}
		if st != nil && st.Options.BestFromMode() == train.BestFromEMA {
			line += " (what --best-from ema picks by: the run's model when this checkpoint is its best)"
		}
		fmt.Fprintln(w, line)
		if v, ok := ema.Meta["metrics"]; ok {
			writeMetrics(w, v, " of the moving average")
		}
	}
	if st != nil {
		writeState(w, st)
	}
	return nil
}

// writeEMAWeights says when the moving average of the weights a
// checkpoint keeps (checkpoint.EMAFile: the model of a run that picks its
// best by it) holds NaN or infinite weights, which every other command
// refuses; nothing when it is whole or there is none. It returns the
// moving average when there is one that could be read.
func writeEMAWeights(w io.Writer, dir, of string) *checkpoint.Model {
	path := filepath.Join(dir, checkpoint.EMAFile)
	if _, err := os.Lstat(path); err != nil {
		return nil
	}
	m, unusable, err := readModelToDescribe(path)
	if err != nil {
		fmt.Fprintf(w, "  moving average %s%s: unreadable: %s\n", checkpoint.EMAFile, of, printable.String(err.Error()))
		return nil
	}
	if unusable != "" {
		fmt.Fprintf(w, "  moving average %s%s: %s\n", checkpoint.EMAFile, of, unusable)
	}
	return m
}

func infoRun(w io.Writer, dir string) error {
	fmt.Fprintf(w, "%s: training run\n", printable.String(dir))
	holder, training := train.TrainingNow(dir)
	if training {
		fmt.Fprintf(w, "  training now (%s): what follows is where it stood at its last checkpoint\n", holder)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, train.CheckpointsDir))
	var steps []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") {
			steps = append(steps, e.Name())
		}
	}
	sort.Strings(steps)
	fmt.Fprintf(w, "  checkpoints: %d", len(steps))
	if len(steps) > 0 {
		fmt.Fprintf(w, " (%s)", printable.String(strings.Join(steps, ", ")))
	}
	fmt.Fprintln(w)
	for _, l := range []string{checkpoint.LastLink, checkpoint.BestLink} {
		if t, err := os.Readlink(filepath.Join(dir, l)); err == nil {
			fmt.Fprintf(w, "  %s -> %s", l, printable.String(t))
			if p := checkpoint.LinkProblem(dir, l); p != "" && !training { // (a trainer at work moves them)
				fmt.Fprintf(w, " (DAMAGED: %s)", printable.String(p))
			}
			fmt.Fprintln(w)
		}
	}
	if p := checkpoint.BestProblem(dir); p != "" && !training {
		fmt.Fprintf(w, "  best: DAMAGED: %s; the commands that load the run's model refuse it until then\n", printable.String(p))
	}
	// What a resume would say of a damaged run (its last link removed, or
	// leading to a checkpoint removed, or into another run's), and the
	// way back; of one being trained, nothing (its trainer is at work on
	// the links).
	var resumeErr error
	if !training {
		resumeErr = train.CheckResumable(dir)
	}
	noCheckpoint := resumeErr == nil || errors.Is(resumeErr, train.ErrNoCheckpoint)
	if !noCheckpoint {
		fmt.Fprintf(w, "  NOT RESUMABLE: %s\n", printable.String(resumeErr.Error()))
	}
	last := filepath.Join(dir, checkpoint.LastLink)
	if _, err := os.Stat(filepath.Join(last, checkpoint.ModelFile)); err != nil || !noCheckpoint {
		pending := train.PendingLastLink(dir)
		switch {
		case training:
			fmt.Fprintf(w, "  no checkpoint yet\n")
		case pending != "":
			how := ": dinoclip train --resume links it and goes on"
			if resumeErr != nil { // (said above)
				how = ""
			}
			fmt.Fprintf(w, "  last checkpoint: %s, not linked as last yet (the run was stopped while linking it)%s\n", pending, how)
		case noCheckpoint:
			fmt.Fprintf(w, "  no checkpoint yet (the run stopped before its first one)\n")
		}
		if run, err := train.ReadRunInfo(dir); err == nil {
			o := run.Options
			fmt.Fprintf(w, "  options: %s, batch %d, max lr %g\n", plural.Count(o.Epochs, "epoch", "epochs"), o.Batch, o.MaxLR)
		}
		return nil
	}
	// The whole model, not only its shape (a default model's 218 MB are
	// read and hashed in 0.43 s on a 2-vCPU Xeon): the last checkpoint is the
	// one a resume starts from, and an update that overflowed can have
	// saved NaN weights with a finite loss, which the resume would refuse.
	m, unusable, err := readModelToDescribe(filepath.Join(last, checkpoint.ModelFile))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  model: %s\n", m.Config.Describe())
	writeTrainedOn(w, dataset.EncodersOf(m.Meta))
	if unusable != "" {
		fmt.Fprintf(w, "  last checkpoint's weights: %s\n", unusable)
	}
	writeEMAWeights(w, last, " of the last checkpoint")
	// The best one's too: the model of a run that picks its best by the
	// moving average (eval and project --model RUN use it).
	if best := filepath.Join(dir, checkpoint.BestLink); !atomicfile.SameFile(best, last) {
		writeEMAWeights(w, best, " of the best checkpoint")
	}
	if run, err := train.ReadRunInfo(dir); err != nil {
		fmt.Fprintf(w, "  %s: NOT READABLE (a resume refuses the run until it is restored): %s\n", train.RunFile, printable.String(err.Error()))
	} else {
		if run.Init != nil {
			fmt.Fprintf(w, "  fine-tuned from: %s (weights sha256 %s)\n", shown(run.Init.Path), shown(run.Init.SHA256))
		}
		switch {
		case run.Device == "":
		case checkDevice(run.Device) != nil:
			fmt.Fprintf(w, "  device: %q: UNKNOWN (an edited run.json? train --resume refuses it)\n", run.Device)
		default:
			fmt.Fprintf(w, "  device: %s (where train --resume goes on)\n", run.Device)
		}
	}
	st, err := readState(last)
	if err != nil {
		return err
	}
	writeState(w, st)
	n, err := countEvals(filepath.Join(dir, train.MetricsFile), st)
	switch {
	case err != nil:
		fmt.Fprintf(w, "  evaluations: DAMAGED: %s (train --resume refuses it)\n", printable.String(err.Error()))
	case n.later > 0:
		fmt.Fprintf(w, "  evaluations: %d in %s, and %d after the last checkpoint (a resume drops them, and evaluates again)\n", n.kept, train.MetricsFile, n.later)
	case n.kept > 0:
		fmt.Fprintf(w, "  evaluations: %d in %s\n", n.kept, train.MetricsFile)
	}
	if err == nil && n.damaged > 0 {
		fmt.Fprintf(w, "  %s: DAMAGED: lines that are no record (edited, or damaged by the disk): %d; a resume drops them, and the records they held are lost (but those of steps after the last checkpoint, which it writes again)\n", train.MetricsFile, n.damaged)
	}
	return nil
}

// evalCounts counts the lines of a metrics file: the evaluation records a
// resume from the last checkpoint keeps and those it drops
// (train.State.KeepsRecord), and the damaged lines, which it drops with
// the records they held (train.ScanMetricsRecords).
type evalCounts struct{ kept, later, damaged int }

// countEvals counts the lines of the metrics file at path for a resume
// from st, the last checkpoint's state; an error where the file cannot be
// read to its end (a missing one holds none).
func countEvals(path string, st *train.State) (evalCounts, error) {
	var n evalCounts
	var err error
	n.damaged, err = train.ScanMetricsRecords(path, func(typ string, step int) error {
		switch {
		case typ != "eval":
		case st.KeepsRecord(step, typ):
			n.kept++
		default:
			n.later++
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return evalCounts{}, nil
	}
	return n, err
}

// infoData describes the training data in dir; unfinished describes it
// though the directory above it shows an unfinished dinoclip synth.
func infoData(w io.Writer, dir string, unfinished bool) error {
	open := train.OpenDataset
	if unfinished {
		open = train.OpenUnfinishedDataset
	}
	d, err := open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	shards := d.Shards()
	fmt.Fprintf(w, "%s: training data\n", printable.String(dir))
	fmt.Fprintf(w, "  shards: %d\n", len(shards))
	fmt.Fprintf(w, "  rows: %d\n", d.Rows)
	fmt.Fprintf(w, "  widths: %d -> %d (features -> targets)\n", d.InputDim, d.OutputDim)
	enc, encErr := dataset.ReadEncoders(dir)
	writeExtracted(w, enc, encErr)
	for _, s := range shards {
		fmt.Fprintf(w, "  %s: %d rows, features %s, targets %s\n", printable.String(s.Name), s.Rows, s.FeatureType, s.TargetType)
	}
	return nil
}

// writeTrainedOn says which models made the data a model was trained on
// (enc, as its file records them), or that they are not recorded: the
// line a user looks for before searching with the model.
func writeTrainedOn(w io.Writer, enc dataset.Encoders) {
	if enc.Known() {
		fmt.Fprintf(w, "  trained on: %s\n", enc)
	} else {
		fmt.Fprintln(w, "  trained on: models not recorded (data without an extract.json, such as dinoclip synth's; a model from a .pt file or from before they were recorded)")
	}
}

// writeExtracted says which models made the features (and targets) of a
// data set, enc as its record gives them (err: it could not be read);
// nothing where it names none.
func writeExtracted(w io.Writer, enc dataset.Encoders, err error) {
	switch {
	case err != nil:
		fmt.Fprintf(w, "  extracted: not known (%s)\n", printable.String(err.Error()))
	case enc.Known():
		fmt.Fprintf(w, "  extracted: %s\n", enc)
	}
}

// infoFeatures describes a directory of features files without targets
// (features extracted alone, for an index): each file's rows and width.
func infoFeatures(w io.Writer, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	type file struct {
		name       string
		rows, cols int
		dtype      string
	}
	var files []file
	rows := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), train.FeatureSuffix) {
			continue
		}
		a, err := npy.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("info: %w", err)
		}
		files = append(files, file{e.Name(), a.Rows(), a.RowLen(), a.DType().Name()})
		rows += a.Rows()
		a.Close()
	}
	fmt.Fprintf(w, "%s: features without targets (extracted alone: dinoclip index reads them; no training data)\n", printable.String(dir))
	fmt.Fprintf(w, "  files: %d\n", len(files))
	fmt.Fprintf(w, "  rows: %d\n", rows)
	enc, encErr := dataset.ReadEncoders(dir)
	writeExtracted(w, enc, encErr)
	for _, f := range files {
		fmt.Fprintf(w, "  %s: %s of %d, %s\n", printable.String(f.name), plural.Count(f.rows, "row", "rows"), f.cols, f.dtype)
	}
	return nil
}

// infoEvalSet describes the evaluation set in dir; unfinished describes it
// though the directory above it shows an unfinished dinoclip synth.
func infoEvalSet(w io.Writer, dir string, unfinished bool) error {
	load := retrieval.LoadSet
	if unfinished {
		load = retrieval.LoadUnfinishedSet
	}
	s, err := load(dir)
	if err != nil {
		return err
	}
	perImage := make([]int, s.Images)
	for _, img := range s.CaptionImage {
		perImage[img]++
	}
	fmt.Fprintf(w, "%s: evaluation set %q\n", printable.String(dir), s.Name)
	fmt.Fprintf(w, "  images: %d\n", s.Images)
	if s.Images > 0 {
		fmt.Fprintf(w, "  captions: %d (%d to %d per image)\n", s.Captions, slices.Min(perImage), slices.Max(perImage))
	} else {
		fmt.Fprintf(w, "  captions: %d\n", s.Captions)
	}
	fmt.Fprintf(w, "  widths: features %d, embeddings %d\n", s.FeatureDim, s.EmbeddingDim)
	writeExtracted(w, s.Encoders, nil)
	for _, name := range []string{retrieval.ImageFeaturesFile, retrieval.ImageCLIPFile, retrieval.CaptionCLIPFile, retrieval.CaptionImageFile} {
		a, err := npy.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s: %s %s\n", name, shapeString(a.Shape()), a.DType().Name())
		a.Close()
	}
	return nil
}
