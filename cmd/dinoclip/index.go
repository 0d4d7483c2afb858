package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
)

func indexCommand() *cli.Command {
	return &cli.Command{
		Name:      "index",
		Usage:     "project image features into a search index (create it, or append to it)",
		UsageText: "dinoclip index --model CKPT --features DIR|FILE.dino.npy [--features ...] --out INDEX [--float32]",
		Description: "Projects DINOv2 image features with the model, normalises each row to unit length and stores\n" +
			"them in the index directory INDEX (docs/FORMAT.md, \"Search index\") as float16 (or float32 with\n" +
			"--float32), one index shard per features file, streamed --batch rows at a time, in fp32 on\n" +
			"either --device (the GPU's fp32 differs from the CPU's in the last place, which moves a few\n" +
			"float16 keys by one step; bf16 would move most). A DIR means\n" +
			"its *.dino.npy files in name order (the shards extraction writes). Row ids number the rows in\n" +
			"the order they are added; the manifest maps id ranges back to the features files. The list of\n" +
			"the rows' images that extraction writes beside a features file (NAME.images.txt, one per\n" +
			"line) is copied into the index, so that search names the images it finds (only when every\n" +
			"features file of the index with rows came with its list: a warning says when some did and one\n" +
			"did not).\n\n" +
			"Running it again on the same INDEX appends: files already indexed (same path once symbolic\n" +
			"links are resolved, same size, rows and sampled contents) are skipped, so a stopped run is\n" +
			"finished by running it again (Ctrl-C keeps the files indexed so far; a kill loses those of the\n" +
			"last second or so, as the manifest is written once a second). An indexed file whose size, rows\n" +
			"or sampled contents changed since is refused (16 windows of 4 KiB are sampled: an edit between\n" +
			"them goes unseen, see docs/FORMAT.md), and so is one whose list of images is not the one\n" +
			"indexed with it (the index would name the old images). A file named twice (or reached twice\n" +
			"through links) is taken once; a file under another name with the same size, rows and sampled\n" +
			"contents (moved or copied since) is skipped too, with a word: indexed twice, its rows would\n" +
			"come twice in every answer. An index made with another model is refused. Only one process\n" +
			"may append to an index at a time. INDEX may not be in a training run's directory itself,\n" +
			"anywhere in its checkpoints, or anywhere in another index or a search's output, where it\n" +
			"would be taken for one of their files (a subdirectory of a run outside its checkpoints is none\n" +
			"of the run's).\n\n" +
			"Example:\n" +
			"   dinoclip index --model runs/base --features features/photos --out photos.index",
		Flags: []cli.Flag{
			stringFlag("model", "model `CKPT`: a model.safetensors file, a checkpoint directory or a run directory (its best, else last, checkpoint; ema.safetensors for a run that picks its best from the EMA)", ""),
			stringSliceFlag("features", "features `DIR` (its *.dino.npy files) or FILE.npy [n, input_dim] (repeat for more)"),
			outFlag("index", "index `DIR` to create or append to"),
			boolFlag("float32", "store a new index's rows as float32 instead of float16 (an existing index keeps its dtype; --float32 on a float16 one is an error)"),
			intFlag("batch", "project `N` rows at a time", defaultProjectBatch),
			deviceFlag(),
			configFlag(),
		},
		Before:       applyConfig,
		OnUsageError: usageError,
		Action:       runIndex,
	}
}

// featureFile is a features file: its absolute path with symbolic links
// resolved (what the index records), the paths it was found by, in order
// (beside which its list of images may lie: a link's, a hard link's), and
// the file's information, by which hard links to one file are told apart
// from copies.
type featureFile struct {
	Path  string
	Given []string
	Info  fs.FileInfo
}

// featuresError is err of the features file f, which says where f is a
// symbolic link that leads to no file, and what it leads to as written
// (the system's error names f, or the path missing at the end of its
// links and directories, which only the system resolves rightly).
func featuresError(f string, err error) error {
	target, lerr := os.Readlink(f)
	if lerr != nil || !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--features %s: %w", f, err)
	}
	return fmt.Errorf("--features %s is a symbolic link (to %s) that leads to no file", f, target)
}

// featureFiles expands --features: a directory gives its *.dino.npy files
// in name order; a file is taken as it is. A file named twice (or reached
// twice, through symbolic or hard links) is taken once.
func featureFiles(args []string) ([]featureFile, error) {
	var files []featureFile
	seen := map[string]int{} // real path: its place in files
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, featuresError(a, err)
		}
		var found []string
		if st.IsDir() {
			entries, err := os.ReadDir(a)
			if err != nil {
				return nil, fmt.Errorf("--features: %w", err)
			}
			// (Joined to the directory as the system resolves it: Join
			// would take LINK/.. away as text, and name the files of
			// another directory than the one listed.)
			dir := atomicfile.ResolveDotDot(a)
			for _, e := range entries {
				if !e.IsDir() && strings.HasSuffix(e.Name(), train.FeatureSuffix) && !strings.HasPrefix(e.Name(), ".") {
					found = append(found, filepath.Join(dir, e.Name()))
				}
			}
			if len(found) == 0 {
				return nil, fmt.Errorf("--features %s: no *.dino.npy files in the directory", a)
			}
			sort.Strings(found)
		} else {
			found = []string{a}
		}
		for _, f := range found {
			// The file's real path: a file reached through a symbolic link
			// (in its name, its directories or the working directory's) is
			// the file it leads to, indexed once.
			real, err := atomicfile.RealPath(f)
			if err != nil {
				return nil, featuresError(f, err)
			}
			if dir := filepath.Dir(real); retrieval.IsIndex(dir) {
				return nil, fmt.Errorf("--features %s is in the search index %s: an index's files are its projections, not DINOv2 features", f, dir)
			}
			info, err := os.Stat(real)
			if err != nil {
				return nil, fmt.Errorf("--features %s: %w", f, err)
			}
			if i, ok := seen[real]; ok {
				files[i].Given = append(files[i].Given, f)
				continue
			}
			if i := slices.IndexFunc(files, func(ff featureFile) bool { return os.SameFile(ff.Info, info) }); i >= 0 {
				files[i].Given = append(files[i].Given, f)
				continue
			}
			seen[real] = len(files)
			files = append(files, featureFile{Path: real, Given: []string{f}, Info: info})
		}
	}
	return files, nil
}

// imagesList is the list of the images of a features file's rows that
// extraction writes beside it (NAME.dino.npy: NAME.images.txt), checked to
// have rows lines; "" when there is none. It is looked for beside the
// paths the file was given by (a link, say), in order, else beside the
// file itself.
func imagesList(given []string, features string, rows int64) (string, error) {
	listOf := func(npy string) string {
		return strings.TrimSuffix(strings.TrimSuffix(npy, ".npy"), ".dino") + ".images.txt"
	}
	// A link there that leads nowhere is a list moved or deleted, not
	// the absence of one: taken for none, the images would go unnamed.
	dangling := func(p string) error {
		if target, err := os.Readlink(p); err == nil {
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: its list of images %s is a symbolic link to %s, which does not exist", features, p, target)
			}
		}
		return nil
	}
	p := listOf(features)
	for _, g := range given {
		if err := dangling(listOf(g)); err != nil {
			return "", err
		}
		if _, err := os.Stat(listOf(g)); err == nil {
			p = listOf(g)
			break
		}
	}
	if err := dangling(p); err != nil {
		return "", err
	}
	if _, err := retrieval.ReadImagesList(p, rows); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("%s: %w", features, err)
	}
	return p, nil
}

// modelIdentity is what an index records of the model m read from path
// (see retrieval.IndexModel): the SHA-256 of its config and parameters,
// and the encoders its metadata names.
func modelIdentity(path string, m *checkpoint.Model) (retrieval.IndexModel, error) {
	cfg, err := json.Marshal(m.Config)
	if err != nil {
		return retrieval.IndexModel{}, err
	}
	h := sha256.New()
	h.Write(cfg)
	leconv.WriteF32(h, m.Params) // (a hash takes every write)
	return retrieval.IndexModel{SHA256: hex.EncodeToString(h.Sum(nil)), Path: path, Config: cfg, Encoders: dataset.EncodersOf(m.Meta)}, nil
}

// sameFiles finds which of a set of files is a given file (os.SameFile),
// by identity where the system gives one.
type sameFiles struct {
	byIdentity map[string]string // path by atomicfile.Identity
	others     []fs.FileInfo     // where the system gives none, with their paths
	otherPaths []string
}

func newSameFiles() *sameFiles { return &sameFiles{byIdentity: map[string]string{}} }

// add adds the file info describes, at path, unless it is there already
// (the first path added for a file is the one find returns).
func (f *sameFiles) add(info fs.FileInfo, path string) {
	if id := atomicfile.Identity(info); id == "" {
		f.others, f.otherPaths = append(f.others, info), append(f.otherPaths, path)
	} else if _, ok := f.byIdentity[id]; !ok {
		f.byIdentity[id] = path
	}
}

// find returns the path added for the file info describes.
func (f *sameFiles) find(info fs.FileInfo) (string, bool) {
	if id := atomicfile.Identity(info); id != "" {
		p, ok := f.byIdentity[id]
		return p, ok
	}
	if j := slices.IndexFunc(f.others, func(o fs.FileInfo) bool { return os.SameFile(o, info) }); j >= 0 {
		return f.otherPaths[j], true
	}
	return "", false
}

func runIndex(cCtx *cli.Context) (err error) {
	batch, device, err := projectionFlags(cCtx, "model", "features", "out")
	if err != nil {
		return err
	}
	files, err := featureFiles(cCtx.StringSlice("features"))
	if err != nil {
		return err
	}
	// Before each is opened (and mapped, which past the system's limit on
	// maps ended in a runtime trace); the index's own shards are counted
	// once it is open (CheckShardCount).
	if len(files) > retrieval.IndexMaxShards {
		return fmt.Errorf("--features: %d features files, more than the %d shards an index may hold (one per file: a search maps each at once): index fewer, larger files (concatenate them)", len(files), retrieval.IndexMaxShards)
	}
	lm, err := loadModel(cCtx.String("model"), device, train.PrecisionFP32, train.PrecisionFP32, cCtx.App.ErrWriter)
	if err != nil {
		return err
	}
	defer lm.Engine.Close()
	c := lm.Model.Config
	// Check every file before writing anything.
	type source struct {
		arr    *npy.Array
		src    retrieval.IndexSource
		images string // the list of the rows' images beside the features file, or ""
		info   fs.FileInfo
		// duplicate: the contents of an earlier source of this run
		duplicate bool
		// renamed: an indexed source under another name (a hard link, a
		// move or a copy), skipped as it; a list beside it names the
		// images of the copy, not of the rows the index holds
		renamed bool
	}
	var sources []source
	defer func() {
		for _, s := range sources {
			s.arr.Close()
		}
	}()
	var total, largest int64
	for _, ff := range files {
		if err := cCtx.Context.Err(); err != nil { // (tens of thousands of files take seconds)
			return err
		}
		f := ff.Path
		a, err := npy.OpenMatrix(f, fmt.Sprintf("[n, %d] of features", c.InputDim))
		if err != nil {
			return fmt.Errorf("--features: %w", err)
		}
		sources = append(sources, source{arr: a})
		shape := a.Shape()
		if shape[1] != c.InputDim {
			return fmt.Errorf("%s: rows are %d wide, but the model %s takes %d-wide features", f, shape[1], lm.Path, c.InputDim)
		}
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		sample, err := featuresSample(a, f)
		if err != nil {
			return err
		}
		if err := retrieval.CheckSourcePath(f); err != nil {
			return err
		}
		sources[len(sources)-1].src = retrieval.IndexSource{Path: f, Size: st.Size(), Rows: int64(shape[0]), Sample: sample}
		sources[len(sources)-1].info = st
		if sources[len(sources)-1].images, err = imagesList(ff.Given, f, int64(shape[0])); err != nil {
			return err
		}
		total += int64(shape[0])
		largest = max(largest, int64(shape[0]))
	}
	if err := checkProjectionMemory(c, device, int(min(int64(batch), largest))); err != nil {
		return err
	}
	// The model's own file, not the run's best or last link that named
	// it, which moves on to other weights as the run trains.
	model, err := modelIdentity(lm.File, lm.Model)
	if err != nil {
		return err
	}
	dtype := "float16"
	if cCtx.Bool("float32") {
		dtype = "float32"
	}
	out, err := atomicfile.ResolveDotDotOut(cCtx.String("out")) // (LINK/.. as the system takes it)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := checkOutPlace(out, "the index"); err != nil {
		return err
	}
	w, err := retrieval.AppendIndex(out, model, c.OutputDim, dtype)
	if err != nil {
		return err
	}
	// Whether this append records the model's path: the index's first.
	// (A path that is not UTF-8 read back from a manifest holds U+FFFD,
	// and so is never the one given: only the first append warns of it,
	// once the manifest is written, however the run ends.)
	recordsModel := w.Manifest().Model.Path == model.Path
	// Whatever stops the run (a failed file, Ctrl-C), the shards appended
	// before it stay in the index, and the user is told so. (Interrupted,
	// the run's error is only "interrupted": what the last write of the
	// manifest lost is said here.)
	before := len(w.Manifest().Shards)
	defer func() {
		cerr := w.Close()
		switch m := w.Manifest(); {
		case cerr != nil && errors.Is(err, context.Canceled):
			fmt.Fprintln(cCtx.App.ErrWriter, errorLine(cerr))
		case err != nil && cerr == nil && len(m.Shards) > before:
			again := "the same command again indexes the rest"
			if !errors.Is(err, context.Canceled) {
				again = "once what stopped it is mended, " + again
			}
			fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: the index %s keeps the %s this run indexed before the stop (%s, %s, in all): %s\n",
				printable.String(out), plural.Count(len(m.Shards)-before, "file", "files"), plural.Count(len(m.Shards), "file", "files"), plural.Count(m.Rows, "row", "rows"), again)
		}
		if recordsModel && len(w.Manifest().Shards) > before { // (the manifest written holds it)
			warnRecordedAsOther(cCtx.App.ErrWriter, "the index's manifest", model.Path)
		}
		// (On one line: errors.Join's newline is escaped in the error line.)
		switch {
		case err == nil:
			err = cerr
		case cerr != nil:
			err = fmt.Errorf("%w; then %w", err, cerr)
		}
	}()
	w.Swept().Report(cCtx.App.ErrWriter, out)
	// Again under the index's lock: an index or a run made around out
	// since the check above (two indexes started at once, one inside the
	// other, both went on).
	if err := checkOutPlace(out, "the index"); err != nil {
		return err
	}
	if cCtx.Bool("float32") && w.DType() != "float32" {
		return fmt.Errorf("--float32: the index %s stores its rows as %s, and an index keeps one dtype; build a new index for float32 rows", out, w.DType())
	}
	// A hard link to an indexed file is that file, under its recorded name.
	// So are the same contents (size, rows and sampled data) under another
	// name: a features file moved or copied since it was indexed, a hard
	// link whose recorded name is gone, or the same file twice in this
	// run. Indexed again, its rows would come twice in every answer.
	// (Maps, not scans: an index of tens of thousands of files.)
	shards := w.Manifest().Shards
	var indexed *sameFiles // the recorded sources that exist, made on first use
	type contents struct {
		sample     string
		size, rows int64
	}
	recorded := map[contents]string{}            // a recorded source's path by its contents
	for _, sh := range slices.Backward(shards) { // (the first shard of the contents wins)
		if sh.Source.Sample != "" {
			recorded[contents{sh.Source.Sample, sh.Source.Size, sh.Source.Rows}] = sh.Source.Path
		}
	}
	inRun := map[contents]string{} // the path of this run's first source of those contents
	for i, s := range sources {
		key := contents{s.src.Sample, s.src.Size, s.src.Rows}
		earlier, ok := inRun[key]
		if !ok && s.src.Sample != "" {
			inRun[key] = s.src.Path
		}
		if _, ok := w.Source(s.src.Path); ok {
			continue
		}
		if indexed == nil {
			indexed = newSameFiles()
			for _, sh := range shards {
				if info, err := os.Stat(sh.Source.Path); err == nil {
					indexed.add(info, sh.Source.Path)
				}
			}
		}
		if p, ok := indexed.find(s.info); ok {
			sources[i].src.Path, sources[i].renamed = p, true
			continue
		}
		if p, ok := recorded[key]; ok {
			fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: %s has the size, rows and sampled contents of %s, indexed already (moved or copied?): skipped\n", printable.String(s.src.Path), printable.String(p))
			sources[i].src.Path, sources[i].renamed = p, true
		} else if earlier != "" {
			fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: %s has the size, rows and sampled contents of %s, indexed in this run: skipped\n", printable.String(s.src.Path), printable.String(earlier))
			sources[i].duplicate = true
		}
	}
	var adding []string
	for _, s := range sources {
		rec, ok := w.Source(s.src.Path)
		switch {
		case !ok:
			if !s.duplicate {
				adding = append(adding, s.src.Path)
			}
		case rec.Rows != s.src.Rows || rec.Size != s.src.Size:
			return fmt.Errorf("%s was indexed when it had %d rows and %d bytes, it now has %d rows and %d bytes; build a new index",
				s.src.Path, rec.Rows, rec.Size, s.src.Rows, s.src.Size)
		case rec.Sample != "" && rec.Sample != s.src.Sample:
			return fmt.Errorf("%s was rewritten since it was indexed (same size, other contents); build a new index", s.src.Path)
		case s.images != "" && !s.renamed:
			if err := w.CheckSourceImages(s.src.Path, s.images, s.src.Rows); err != nil {
				return err
			}
		}
	}
	if err := w.CheckShardCount(len(adding)); err != nil {
		return err
	}
	// The index's names for its model (a copy of the weights that names
	// none, or others, appends under them), against the file's and the
	// features' to be appended.
	names := w.Manifest().Model.Encoders
	warnEncoders(cCtx.App.ErrWriter, "the index "+out, names, "the model "+lm.Path, model.Encoders)
	warnFeaturesEncoders(cCtx.App.ErrWriter, "the index "+out, names, adding)
	var bar *countBar // (none for one chunk)
	if total > int64(batch) {
		bar = newCountBar(cCtx, total, "indexing", "rows", true)
		defer bar.finish()
	}
	ctx := cCtx.Context
	var done, added, skipped, twice int64 // (twice: files skipped as copies of one indexed in this run)
	var tiny []string                     // (files whose projections have rows too short to normalise, and how many)
	// A chunk is at most one file's rows: --batch may be far larger.
	x := make([]float32, int(min(int64(batch), largest))*c.InputDim)
	for _, s := range sources {
		if _, ok := w.Source(s.src.Path); ok || s.duplicate {
			if s.duplicate {
				twice++
			} else {
				skipped++
			}
			done += s.src.Rows
			bar.set(done)
			continue
		}
		var tinyRows, firstTiny int
		err := w.Append(s.src, s.images, batch, func(dst []float32, lo, hi int) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			xs := x[:(hi-lo)*c.InputDim]
			if err := readFeatures(s.arr, xs, lo, hi); err != nil {
				return err
			}
			if err := lm.Engine.Project(dst, xs, hi-lo); err != nil {
				return fmt.Errorf("rows %d to %d of %s: %w", lo, hi, s.src.Path, err)
			}
			if t := retrieval.TinyRows(dst, c.OutputDim); len(t) > 0 {
				if tinyRows == 0 {
					firstTiny = lo + t[0]
				}
				tinyRows += len(t)
			}
			if indexChunkHook != nil {
				indexChunkHook(s.src.Path, hi)
			}
			if int64(hi) == s.src.Rows {
				// The rows came through the file's map as they were
				// projected: a file rewritten in place meanwhile gave some
				// of each version, which its sample, taken again, tells.
				now, err := featuresSample(s.arr, s.src.Path)
				if err != nil {
					return err
				}
				if now != s.src.Sample {
					return fmt.Errorf("%s was rewritten while it was indexed (its sampled contents changed): its rows are not of one version; run the command again once nothing writes it", s.src.Path)
				}
			}
			bar.set(done + int64(hi))
			return nil
		})
		if err != nil {
			return err
		}
		if tinyRows > 0 {
			tiny = append(tiny, fmt.Sprintf("%s (%d rows, the first row %d)", printable.String(s.src.Path), tinyRows, firstTiny))
		}
		done += s.src.Rows
		added += s.src.Rows
	}
	if err := w.Commit(); err != nil {
		return err
	}
	m := w.Manifest()
	msg := fmt.Sprintf("index %s: %s of %d-wide %s embeddings in %s; added %s", printable.String(out), plural.Count(m.Rows, "row", "rows"), m.Dim, m.DType, plural.Count(len(m.Shards), "shard", "shards"), plural.Count(added, "row", "rows"))
	if skipped > 0 {
		msg += fmt.Sprintf(", skipped %s already indexed", plural.Count(skipped, "file", "files"))
	}
	if twice > 0 {
		msg += fmt.Sprintf(", skipped %s indexed in this run", plural.Count(twice, "copy of a file", "copies of files"))
	}
	fmt.Fprintln(cCtx.App.ErrWriter, msg)
	if len(tiny) > 0 {
		fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: warning: the model's projections of %s %s\n", strings.Join(tiny, ", "), tinyProjectionsWhy)
	}
	if listed, needed := m.ImageLists(); added > 0 && listed > 0 && listed < needed {
		fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: warning: %d of the %d shards of %s with rows list their rows' images, the others do not (their features files had no NAME.images.txt beside them): dinoclip search names no images in this index; to have them, index anew into a new INDEX, every features file with its list\n",
			listed, needed, printable.String(out))
	}
	return nil
}

// indexChunkHook, where a test sets it, runs after index projects each
// chunk of a features file (at path, its rows up to hi).
var indexChunkHook func(path string, hi int)

// featuresSample is the sample of the rows of the features file a (at
// path) that an index records of its source (retrieval.DataSample).
func featuresSample(a *npy.Array, path string) (string, error) {
	raw, err := a.RawRows(0, a.Shape()[0])
	if err != nil {
		return "", err
	}
	sample, err := retrieval.DataSample(raw)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return sample, nil
}
