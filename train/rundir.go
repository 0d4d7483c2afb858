package train

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/internal/strictjson"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/dinoclip/dinoclip/safetensors"
)

// Names inside a run directory (docs/FORMAT.md).
const (
	CheckpointsDir = checkpoint.CheckpointsDir
	RunFile        = checkpoint.RunFile
)

// checkpointName is the name of the checkpoint of step in a run
// directory, checkpoints/step-NNNNNNNN.
func checkpointName(step int) string {
	return filepath.Join(CheckpointsDir, fmt.Sprintf("step-%08d", step))
}

// pendingEvalSuffix ends the name of a checkpoint saved at an epoch end
// whose evaluation an interrupt stopped (State.PendingEval): the
// checkpoint of the step's own name is the one saved after the
// evaluation, which differs from it in its state and metadata, and a
// checkpoint, once saved, is never rewritten (checkpoint.Save).
const pendingEvalSuffix = ".pending-eval"

// checkpointName is the name of st's checkpoint: checkpointName(st.Step),
// with pendingEvalSuffix while its evaluation is pending.
func (st State) checkpointName() string {
	if st.PendingEval != nil {
		return checkpointName(st.Step) + pendingEvalSuffix
	}
	return checkpointName(st.Step)
}

// stepCheckpoint is a checkpoint directory of a run: its name (as the
// last link names it, checkpoints/...), its step, and whether its
// evaluation is pending.
type stepCheckpoint struct {
	name        string
	step        int
	evalPending bool
}

// parseCheckpointName is the step of the checkpoint directory called name
// (checkpointName's base, or with pendingEvalSuffix: evalPending), and
// whether name is one.
func parseCheckpointName(name string) (step int, evalPending, ok bool) {
	if _, err := fmt.Sscanf(name, "step-%d", &step); err != nil || step < 0 {
		return 0, false, false
	}
	switch base := filepath.Base(checkpointName(step)); name {
	case base:
		return step, false, true
	case base + pendingEvalSuffix:
		return step, true, true
	}
	return 0, false, false
}

// stepCheckpoints lists the checkpoint directories in a run directory by
// step, a pending one before the evaluated one of the same step.
// Directories of other names are not the run's, and are left out.
func stepCheckpoints(runDir string) []stepCheckpoint {
	entries, _ := os.ReadDir(filepath.Join(runDir, CheckpointsDir))
	var cks []stepCheckpoint
	for _, e := range entries {
		if step, pending, ok := parseCheckpointName(e.Name()); ok && e.IsDir() {
			cks = append(cks, stepCheckpoint{filepath.Join(CheckpointsDir, e.Name()), step, pending})
		}
	}
	slices.SortFunc(cks, func(a, b stepCheckpoint) int {
		switch {
		case a.step != b.step:
			return cmp.Compare(a.step, b.step)
		case a.evalPending == b.evalPending:
			return 0
		case a.evalPending:
			return -1
		}
		return 1
	})
	return cks
}

// RunInfo is run.json: what a run trains (model, data, evaluation sets)
// and where it stands (its State, whose fields it holds at the top level).
// A run.json written before the model, data and sets were recorded lacks
// them: a resume then takes the model from the checkpoint and the data and
// sets from the flags.
// It is written when the run starts and rewritten after every checkpoint,
// so that it names the run's newest step and best checkpoint, and so that
// 'dinoclip train --resume --out RUN' needs nothing else.
type RunInfo struct {
	Model   nn.Config `json:"model"`
	DataDir string    `json:"data_dir"` // absolute
	Evals   []EvalRef `json:"evals"`
	// Init is the model a fine-tuning run started from (Trainer.Init);
	// absent for a run from a random initialisation.
	Init *InitRef `json:"init,omitempty"`
	// Device is the device the run last trained on ("cpu", "cuda"): a
	// resume continues there unless told otherwise, since the arithmetic
	// of another device differs in the last place, and the run would not
	// end with the bits of one never stopped. Absent in a run.json from
	// before it was recorded.
	Device string `json:"device,omitempty"`
	// Inputs identifies the contents of the training data and evaluation
	// sets, which a resume must find again; absent in a run.json written
	// before they were recorded.
	Inputs *Inputs `json:"inputs,omitempty"`
	State
}

// InitRef records where a fine-tuning run started: the model file
// (absolute, links resolved) and ParamsSHA256 of the weights it read from it, which tells
// whether that file still holds them.
type InitRef struct {
	Path   string `json:"path"`
	SHA256 string `json:"params_sha256"`
}

// ParamsSHA256 is the hex SHA-256 of a flat parameter buffer as float32
// little-endian bytes in [nn.Layout] order: a hash of the weights alone,
// whatever file (and metadata) holds them.
func ParamsSHA256(params []float32) string {
	h := sha256.New()
	leconv.WriteF32(h, params) // (a hash takes every write)
	return hex.EncodeToString(h.Sum(nil))
}

// EvalRef is an evaluation set of a run: its name (what the best metric
// and the records refer to) and its directory (absolute; empty for a set
// that was not loaded from one).
type EvalRef struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
}

// ReadRunInfo reads a run directory's run.json.
func ReadRunInfo(dir string) (RunInfo, error) {
	path := filepath.Join(dir, RunFile)
	var info RunInfo
	// Through a link too (a run kept in git-annex or DVC, read by info or
	// eval); the commands that write a run refuse links (checkRunDirFiles).
	b, err := atomicfile.ReadRegular(path, checkpoint.MaxRunFileBytes)
	if nr := (*atomicfile.NotRegularError)(nil); errors.As(err, &nr) {
		return info, runFileError(path, nr.Kind)
	}
	if err != nil {
		return info, fmt.Errorf("run directory %s: %w", dir, err)
	}
	// (Text that is not UTF-8 or a key given twice is refused, as
	// checkpoint.Resolve refuses it: no run writes either, and each reader
	// would take such a document its own way.)
	if err := strictjson.CheckKeys(b); err != nil {
		return info, fmt.Errorf("%s: %w (an edited run.json?)", path, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%s: %w", path, strictjson.Describe(err))
	}
	return info, nil
}

// runInfo is run.json for the run at st.
func (tr *Trainer) runInfo(st State) RunInfo {
	info := RunInfo{Model: tr.Engine.Config(), DataDir: atomicfile.AbsPath(tr.Data.Dir), Evals: []EvalRef{}, Init: tr.initRef, Device: tr.Device, Inputs: tr.inputs, State: st}
	for _, s := range tr.Evals {
		info.Evals = append(info.Evals, EvalRef{Name: s.Name, Dir: atomicfile.AbsPath(s.Dir)})
	}
	return info
}

// CheckRecordedPath refuses a path that run.json would record (absolute)
// where it is not UTF-8: what names it ("training data"). A command that
// makes a run's inputs before the run (demo's data) checks their path
// first with it, before minutes of work the run would then refuse.
func CheckRecordedPath(what, path string) error {
	if p := atomicfile.AbsPath(path); !utf8.ValidString(p) {
		return fmt.Errorf("%s %q: the path is not UTF-8 text, and run.json, which records it for a resume, holds text: rename it, or give a path to it through a link whose name is UTF-8", what, p)
	}
	return nil
}

// checkRecordedPaths refuses training data (its directory or a shard) or
// an evaluation set whose path, as run.json records it (atomicfile.AbsPath, a
// shard's name), is not UTF-8: JSON holds text,
// and such a path would read back as another (bytes that are not UTF-8
// become U+FFFD), which a resume could not find.
func (tr *Trainer) checkRecordedPaths() error {
	if err := CheckRecordedPath("training data", tr.Data.Dir); err != nil {
		return err
	}
	// (Each shard's name too: run.json's inputs record them.)
	for _, s := range tr.Data.shards {
		if err := CheckRecordedPath("training shard", filepath.Join(tr.Data.Dir, s.name+FeatureSuffix)); err != nil {
			return err
		}
	}
	for _, s := range tr.Evals {
		if err := CheckRecordedPath("evaluation set", s.Dir); err != nil {
			return err
		}
	}
	return nil
}

// CheckResumable reports why the run in dir cannot be resumed: it has no
// checkpoint yet (start it anew), or its last link points at a checkpoint
// that is gone (it can then be neither resumed nor started anew, see
// checkNewRunDir: remove it or use another directory), and so on; or,
// where it finds any such reason while another process holds the run's
// lock, the *LockedError: that process is starting the run, or training
// it, and what it reads may be a checkpoint that process is replacing
// (the last link moved between two of its files). It is for a process
// that does not hold the lock yet.
func CheckResumable(dir string) error {
	err := checkResumable(dir)
	if err != nil {
		if lerr := checkUnlocked(dir); lerr != nil {
			return lerr
		}
	}
	return err
}

// ErrNoCheckpoint marks CheckResumable's error for a run without one (a
// run that stopped before its first checkpoint, or is about to save it).
var ErrNoCheckpoint = errors.New("it has no checkpoint yet; start the run without --resume")

// noRunError is why dir, which has no checkpoint, is no run to resume
// either, or nil when a run was started in it (its run.json or lock file:
// a run stopped before its first checkpoint): a directory within a run
// (its checkpoints, one of them, the last link), whose run is the --out to
// give, or any other.
func noRunError(dir string) error {
	for _, name := range []string{RunFile, LockFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return nil
		}
	}
	for _, up := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		if st, err := os.Lstat(filepath.Join(up, RunFile)); err == nil && st.Mode().IsRegular() {
			return fmt.Errorf("nothing to resume in %s: it holds no run, but it is within the run directory %s: resume that, with --out %s", dir, up, printable.ShellArg(up))
		}
	}
	return fmt.Errorf("nothing to resume in %s: it holds no run (no %s, no checkpoint)", dir, RunFile)
}

// checkResumable is CheckResumable for the process holding the lock.
func checkResumable(dir string) error {
	switch st, err := os.Stat(dir); {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no such run directory %s", dir)
	case err != nil:
		return fmt.Errorf("run directory: %w", err)
	case !st.IsDir():
		return fmt.Errorf("%s is not a directory, not a run to resume", dir)
	}
	if err := checkRunDirFiles(dir); err != nil {
		return err
	}
	if err := noRunFileError(dir); err != nil {
		return err
	}
	last := filepath.Join(dir, checkpoint.LastLink)
	st, err := os.Lstat(last)
	if err != nil {
		if pending := PendingLastLink(dir); pending != "" {
			// (The resume links it first: finishLastLink.)
			return runFileAgrees(dir, filepath.Join(dir, pending))
		}
		if err := orphanedCheckpoints(dir); err != nil {
			return err
		}
		if err := noRunError(dir); err != nil {
			return err
		}
		return fmt.Errorf("nothing to resume in %s: %w", dir, ErrNoCheckpoint)
	}
	if st.Mode()&os.ModeSymlink == 0 {
		// The trainer replaces the link at every checkpoint; it cannot
		// replace a directory or file.
		return fmt.Errorf("%s is not a link to a checkpoint, as the trainer keeps it: move it away and make it one (ln -s checkpoints/step-NNNNNNNN %s)", last, printable.ShellArg(last))
	}
	// (Only for the run's own checkpoint: a link edited into another
	// run's is refused for that, below.)
	own := ownCheckpoint(dir, last)
	if own {
		if err := runFileAgrees(dir, last); err != nil {
			return err
		}
	}
	if lacking(resumeFiles(dir, last), last) != "" {
		return brokenRunError(dir)
	}
	if err := StepsAgree(last); err != nil {
		return err
	}
	if own {
		return nil
	}
	to, _ := os.Readlink(last)
	why := fmt.Sprintf("which is not a checkpoint in %s: a run resumes from its own checkpoints", filepath.Join(dir, CheckpointsDir))
	if !filepath.IsAbs(to) && atomicfile.IsLink(filepath.Join(dir, to)) {
		why = "another link: the trainer links the last checkpoint directly"
	}
	return fmt.Errorf("%s leads to %s, %s; point it at one of them (ln -sfn %s/step-NNNNNNNN %s)",
		last, to, why, CheckpointsDir, printable.ShellArg(last))
}

// ownCheckpoint says whether the link last of the run in dir leads to one
// of the run's own checkpoints, the one of its name in checkpoints/
// (wherever that or the checkpoint itself is linked to: a store on another
// disk), directly, as the trainer links it (the resume takes the
// checkpoint's name from the link): a link edited into another run's would
// continue that run's training here, under this run's name.
func ownCheckpoint(dir, last string) bool {
	to, _ := os.Readlink(last)
	held, herr := os.Stat(last)
	own, oerr := os.Stat(filepath.Join(dir, CheckpointsDir, filepath.Base(filepath.Clean(to))))
	return herr == nil && oerr == nil && os.SameFile(held, own)
}

// runFileAgrees refuses the run in dir where its run.json's options are
// not the ones its last checkpoint ck records (the trainer state in its
// optimizer file): one of them was edited, and a resume takes its
// precision, and so its engine, from run.json before it reads the state.
// A run.json or state it cannot read is left to the resume's own checks,
// as is the rest of the state (restore).
func runFileAgrees(dir, ck string) error {
	info, err := ReadRunInfo(dir)
	if err != nil || info.Options == (Options{}) {
		return nil
	}
	o, ok := checkpointOptions(ck)
	if !ok || o == info.Options {
		return nil
	}
	return fmt.Errorf("run directory %s: its %s and its last checkpoint (%s) record other options (%s): one of them was edited; put back what the edited one held (a resumed run keeps its options: to train with others, start a new run from the checkpoint with --init)",
		dir, RunFile, ck, optionsDiff(o, info.Options))
}

// checkpointOptions are the options that the trainer state in the
// checkpoint ck (its optimizer file's) records, and whether it holds any
// that can be read.
func checkpointOptions(ck string) (Options, bool) {
	var st struct {
		Options *Options `json:"options"`
	}
	// (A state that does not match its SHA-256 is restore's to report.)
	state, err := checkpoint.ReadState(filepath.Join(ck, checkpoint.OptimizerFile))
	if err == nil {
		err = json.Unmarshal(state, &st)
	}
	if err != nil || st.Options == nil {
		return Options{}, false
	}
	return *st.Options, true
}

// brokenRunError is what both a resume and a new run say of a run
// directory whose last checkpoint is gone, or lacks a file a resume reads:
// the way back is an older whole checkpoint, linked as the last (the steps
// after it are trained again), when one is left; otherwise removing the
// directory or using another.
func brokenRunError(dir string) error {
	last := filepath.Join(dir, checkpoint.LastLink)
	target, _ := os.Readlink(last)
	missing := "is missing"
	if _, err := os.Stat(last); err == nil {
		missing = "lacks a whole " + lacking(resumeFiles(dir, last), last) + ", which a resume reads"
	}
	if _, older := newestCheckpoints(dir); older != "" {
		return fmt.Errorf("run directory %s holds a run whose last checkpoint %s (%s -> %s); its newest whole checkpoint is %s: link it as the last to resume from there (ln -sfn %s %s, then dinoclip train --resume --out %s), or train into another --out",
			dir, missing, last, target, older, older, printable.ShellArg(last), printable.ShellArg(dir))
	}
	return fmt.Errorf("run directory %s holds a run whose last checkpoint %s (%s -> %s), and no other whole checkpoint: it can be neither resumed nor overwritten; remove %s, or train into another --out",
		dir, missing, last, target, dir)
}

// newestCheckpoints scans the checkpoints of the run in dir for the newest
// one and the newest whole one, which holds every file a resume reads
// (model, optimizer state, and the moving average or float64 state when
// the run keeps them), each named as the last link names it
// (checkpoints/step-NNNNNNNN), or "" when there is none.
func newestCheckpoints(dir string) (newest, whole string) {
	cks := stepCheckpoints(dir)
	if len(cks) == 0 {
		return "", ""
	}
	return cks[len(cks)-1].name, newestWhole(dir, cks)
}

// newestWhole is the newest of the checkpoints cks of the run in dir that
// has the files a resume reads, each a safetensors file by its header,
// and a trainer state that matches its SHA-256 (what a resume finds
// before it reads the tensors), or "" where none has.
func newestWhole(dir string, cks []stepCheckpoint) string {
	for i := len(cks) - 1; i >= 0; i-- {
		ck := filepath.Join(dir, cks[i].name)
		if lacking(resumeFiles(dir, ck), ck) != "" {
			continue
		}
		if _, err := checkpoint.ReadState(filepath.Join(ck, checkpoint.OptimizerFile)); err == nil {
			return cks[i].name
		}
	}
	return ""
}

// olderCheckpointHint adds to err, the run in dir's last checkpoint
// failing to load (a file damaged or edited), the way back that
// brokenRunError offers for a checkpoint whose files are missing: the
// newest whole checkpoint before it (newestWhole), linked as the last.
// An error that says nothing of the files (unreadable) gets none.
func olderCheckpointHint(dir string, err error) error {
	last := filepath.Join(dir, checkpoint.LastLink)
	target, lerr := os.Readlink(last)
	if lerr != nil || unreadable(err) {
		return err
	}
	// Those before it in the run's order (a checkpoint of its step saved
	// before the epoch's evaluation comes before it too).
	cks := stepCheckpoints(dir)
	before := slices.IndexFunc(cks, func(c stepCheckpoint) bool { return filepath.Base(c.name) == filepath.Base(target) })
	if before < 0 {
		return err
	}
	if older := newestWhole(dir, cks[:before]); older != "" {
		return fmt.Errorf("%w; the run's newest whole checkpoint before it is %s: link it as the last to resume from there (ln -sfn %s %s, then dinoclip train --resume --out %s; the steps after it are trained again)",
			err, older, older, printable.ShellArg(last), printable.ShellArg(dir))
	}
	return err
}

// resumeFiles are the files of the checkpoint ck of the run in dir that a
// resume reads: the model, the optimizer state, and the moving average or
// the float64 state where the run keeps them, as ck's own trainer state
// records its options (run.json's where that cannot be read). So a
// run.json edited alone does not make every checkpoint look broken; a
// resume holds the two to each other (runFileAgrees).
func resumeFiles(dir, ck string) []string {
	files := []string{checkpoint.ModelFile, checkpoint.OptimizerFile}
	o, ok := checkpointOptions(ck)
	if !ok {
		info, err := ReadRunInfo(dir)
		if err != nil {
			return files
		}
		o = info.Options
	}
	if o.EMA != 0 {
		files = append(files, checkpoint.EMAFile)
	}
	if o.PrecisionMode() == PrecisionFP64 {
		files = append(files, checkpoint.Float64File)
	}
	return files
}

// lacking is the first of files (resumeFiles) that the checkpoint ck
// lacks whole: missing, or not a safetensors file by its header (cut
// short, say; its data is checked when a resume reads it), or "". A file
// that cannot be opened for a reason that says nothing of it (unreadable)
// is not lacking: the resume's own read reports why, where a checkpoint
// called broken would be advised removed.
func lacking(files []string, ck string) string {
	for _, f := range files {
		st, err := safetensors.Open(filepath.Join(ck, f))
		if err != nil {
			if unreadable(err) {
				continue
			}
			return f
		}
		st.Close()
	}
	return ""
}

// unreadable reports whether err, opening a run's file, says nothing of
// the file: no permission to read it, or the process out of file
// descriptors or memory.
func unreadable(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOMEM)
}

// orphanedCheckpoints refuses a run directory whose last link is gone but
// whose checkpoints are still there (the link was removed by hand): a
// resume has nothing to start from, and a new run would mix with them and
// prune them. It names the newest whole one to link again, or says that
// none is whole.
func orphanedCheckpoints(dir string) error {
	newest, whole := newestCheckpoints(dir)
	if newest == "" {
		return nil
	}
	last := filepath.Join(dir, checkpoint.LastLink)
	if whole == "" {
		return fmt.Errorf("run directory %s holds checkpoints but no %s link (removed, or the run was stopped before it made it), and every one of them lacks files a resume reads: it can be neither resumed nor trained into; remove %s, or train into another --out",
			dir, checkpoint.LastLink, dir)
	}
	// (Linked and resumed, it would be refused for that.)
	if err := runFileAgrees(dir, filepath.Join(dir, whole)); err != nil {
		return err
	}
	which := "the newest"
	if whole != newest {
		which = fmt.Sprintf("the newest whole one (the newer %s lacks files a resume reads)", newest)
	}
	return fmt.Errorf("run directory %s holds checkpoints but no %s link (removed, or the run was stopped before it made it): link %s to resume it (ln -s %s %s, then dinoclip train --resume --out %s), or train into another --out",
		dir, checkpoint.LastLink, which, whole, printable.ShellArg(last), printable.ShellArg(dir))
}

// noRunFileError refuses, for a resume and for a new run, a run directory
// that holds checkpoints but whose run.json is gone (deleted by hand: a
// run writes it before its first checkpoint, and replaces it atomically):
// a resume reads the run's inputs from it, so the run cannot go on, but
// the weights of its newest whole checkpoint can start a new one. Nil
// for any other directory.
func noRunFileError(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, RunFile)); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	newest, whole := newestCheckpoints(dir)
	if newest == "" {
		return nil
	}
	why := fmt.Sprintf("run directory %s holds a run's checkpoints but no %s (deleted?), which a resume reads: it can be neither resumed nor trained into", dir, RunFile)
	if whole == "" {
		return fmt.Errorf("%s, and none of its checkpoints is whole; remove %s, or train into another --out", why, dir)
	}
	return fmt.Errorf("%s; put %s back, or start a new run from the weights of its newest whole checkpoint (dinoclip train --init %s --data DATA --out NEW_RUN: the optimizer state and the schedule start anew)",
		why, RunFile, printable.ShellArg(filepath.Join(dir, whole)))
}

// checkNewRunDir refuses a run directory that already holds checkpoints
// rather than mix a new run with it, and one that holds anything a run
// does not write (a directory used for something else: its files would
// end up beside the run's, and pruning could be pointed at them).
func checkNewRunDir(dir string) error {
	if err := checkRunDirFiles(dir); err != nil {
		return err
	}
	if err := noRunFileError(dir); err != nil {
		return err
	}
	last := filepath.Join(dir, checkpoint.LastLink)
	if _, err := os.Lstat(last); err != nil {
		// (A checkpoint a killed run left unlinked is its last: a resume
		// links it.)
		if PendingLastLink(dir) != "" {
			return heldRunError(dir)
		}
		if err := orphanedCheckpoints(dir); err != nil {
			return err
		}
		return foreignFiles(dir)
	}
	if _, err := os.Stat(filepath.Join(last, checkpoint.ModelFile)); err != nil {
		return brokenRunError(dir)
	}
	return heldRunError(dir)
}

// heldRunError refuses to start a new run in dir, which holds one.
func heldRunError(dir string) error {
	return fmt.Errorf("run directory %s already holds a run; train into another --out, or continue this one with: dinoclip train --resume --out %s", dir, printable.ShellArg(dir))
}

// CheckNewRun is the early word on the directory dir of a new run, for a
// caller to say before it opens an engine and computes CLIP's recall: the
// *LockedError of a run another process trains there, or why Run would
// not start a new run in it (checkNewRunDir). Run decides again under the
// lock.
func CheckNewRun(dir string) error {
	if holder, held := TrainingNow(dir); held {
		return &LockedError{Dir: dir, Holder: holder}
	}
	return checkNewRunDir(dir)
}

// foreignFiles refuses a directory without a run (no last link) that
// holds a file no run writes: a run that died before its first checkpoint
// leaves only run.json, the lock, metrics.jsonl, checkpoints/ and hidden
// temporary files.
func foreignFiles(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, checkpoint.LastLink)); err == nil {
		return nil
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		switch n := e.Name(); {
		case n == RunFile || n == LockFile || n == MetricsFile || n == CheckpointsDir || strings.HasPrefix(n, "."):
		default:
			return fmt.Errorf("run directory %s holds %s, which no training run writes: train into a new or empty directory", dir, n)
		}
	}
	return nil
}

// checkRunDirFiles refuses a run directory whose run.json, lock or
// metrics.jsonl is not a regular file (checkRunFile), or whose checkpoints
// is not a directory of its own: through a link, checkpoints would be
// written into (and pruned from) wherever it leads, another run's say
// (checkCheckpointsDir, checkCheckpointsOwner).
func checkRunDirFiles(dir string) error {
	for _, name := range []string{RunFile, LockFile, MetricsFile} {
		if err := checkRunFile(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	if err := checkCheckpointsDir(dir); err != nil {
		return err
	}
	return checkCheckpointsOwner(dir)
}

// checkCheckpointsDir refuses a run's checkpoints/ that is not a directory,
// or a link that leads into another run (its checkpoints, one of them, the
// run directory itself) or to a directory holding this run (its parent,
// /): training writes and prunes checkpoints there. A link to a directory
// of no run (checkpoints moved to a larger disk) is the run's own; one that
// leads nowhere now (a disk not mounted) is refused with what to do.
func checkCheckpointsDir(dir string) error {
	path := filepath.Join(dir, CheckpointsDir)
	st, err := os.Lstat(path)
	if err != nil || st.IsDir() {
		return nil
	}
	if st.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s is %s, not a directory: training writes and prunes checkpoints in it and will not do so through it; remove it (a run's own checkpoints are a directory, or a link to one outside any run)",
			path, atomicfile.Kind(st.Mode()))
	}
	target, err := atomicfile.RealPath(path)
	if err == nil {
		var tst os.FileInfo
		if tst, err = os.Stat(target); err == nil && !tst.IsDir() {
			err = fmt.Errorf("%s", atomicfile.Kind(tst.Mode()))
		}
	}
	if err != nil {
		to, _ := os.Readlink(path)
		return fmt.Errorf("%s is a link to %s, which is not a directory it can reach (%v): mount or restore it, or point the link at the run's checkpoints", path, to, err)
	}
	self, err := atomicfile.RealPath(dir)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if self == target || strings.HasPrefix(self, strings.TrimSuffix(target, string(filepath.Separator))+string(filepath.Separator)) {
		return fmt.Errorf("%s is a link to %s, which holds the run itself: training would write and prune checkpoints beside the run's own files; point it at a directory of its own", path, target)
	}
	// The run directories at or above the target, up to this run's.
	for owner := target; owner != self; owner = filepath.Dir(owner) {
		if rst, err := os.Lstat(filepath.Join(owner, RunFile)); err == nil && rst.Mode().IsRegular() {
			return fmt.Errorf("%s is a link to %s, in the run in %s: training would write and prune checkpoints of that run's; point it at this run's own",
				path, target, owner)
		}
		if filepath.Dir(owner) == owner {
			break
		}
	}
	return nil
}

// startRunDir prepares a new run directory (see checkNewRunDir).
func startRunDir(dir string, info RunInfo) error {
	if err := checkNewRunDir(dir); err != nil {
		return err
	}
	checkpoints := filepath.Join(dir, CheckpointsDir)
	made, err := madedirs.MkdirAll(checkpoints)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	// Leftovers of a run that died before its first checkpoint.
	os.Remove(filepath.Join(dir, MetricsFile))
	if err := writeJSON(filepath.Join(dir, RunFile), info); err != nil {
		madedirs.Remove(checkpoints, made) // (the run refused leaves what it found)
		return err
	}
	return nil
}

// save writes a checkpoint of the engine at st, points last (and best, when
// improved is not nil) at it, and prunes step checkpoints beyond Keep. The
// evaluation reports of an epoch end go into the model's metadata, those
// of the moving average of the weights into its file's. A failed save
// stops the run; its error says what is left of the run and how to go on
// (stopAdvice: a full disk is the usual cause, and the run resumes from
// its last checkpoint once there is room).
func (tr *Trainer) save(st State, improved *Best, reports, emaReports []retrieval.Report) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w; %s", err, tr.stopAdvice(st.Step, err))
		}
	}()
	name := st.checkpointName()
	if improved != nil {
		improved.Checkpoint = name
		st.Best = improved
	}
	st.InputsSHA256 = tr.inputs.SHA256()
	n := tr.Engine.Config().NumParams()
	params, m, v := make([]float32, n), make([]float32, n), make([]float32, n)
	if err := tr.Engine.Parameters(params); err != nil {
		return err
	}
	// No checkpoint of weights an update made NaN or infinite: no command
	// would load it, and the run's advice would call it its last good one.
	if err := finiteWeights(st.Step, params); err != nil {
		return err
	}
	if err := tr.Engine.Moments(m, v); err != nil {
		return err
	}
	if tr.metrics != nil {
		st.LogRecords, st.LogSHA256 = tr.metrics.records, tr.metrics.digest.sum()
	}
	state, err := json.Marshal(st)
	if err != nil {
		return err
	}
	meta, err := modelMeta(st, tr.Encoders, reports)
	if err != nil {
		return err
	}
	ck := &checkpoint.Checkpoint{Config: tr.Engine.Config(), Params: params, Meta: meta, M: m, V: v, State: state}
	if e := tr.float64Engine(); e != nil {
		ck.Float64 = &checkpoint.Float64State{Params: e.Model.Params, M: e.M, V: e.V}
	}
	if tr.ema != nil {
		if err := tr.syncEMA(); err != nil {
			return err
		}
		if ck.EMAMeta, err = modelMeta(st, tr.Encoders, emaReports); err != nil {
			return err
		}
		ck.EMA, ck.EMAMeta["ema_decay"] = tr.ema, strconv.FormatFloat(st.Options.EMA, 'g', -1, 64)
	}
	if tr.metrics != nil {
		if err := tr.metrics.sync(); err != nil {
			return fmt.Errorf("%s: %w", MetricsFile, err)
		}
	}
	dir := filepath.Join(tr.RunDir, name)
	// The last link's new form is made before the checkpoint is put in
	// place and renamed over the link after it: a run killed between the
	// two leaves it, leading to the whole checkpoint, which the next start
	// links when the run has no last link yet (finishLastLink); so does a
	// process ended at once there. A save that fails removes it, as does a
	// process ended at once before the checkpoint is in place: it would
	// lead nowhere.
	last, err := newLink(tr.RunDir, checkpoint.LastLink, name)
	if err != nil {
		return err
	}
	if err := checkpoint.Save(dir, ck); err != nil {
		last.abandon()
		return err
	}
	if err := last.place(); err != nil {
		return err
	}
	if improved != nil {
		if err := pointLink(tr.RunDir, checkpoint.BestLink, name); err != nil {
			return err
		}
	}
	tr.Log.Debug("checkpoint", "dir", dir, "step", st.Step)
	if err := tr.prune(st); err != nil {
		return err
	}
	return writeJSON(filepath.Join(tr.RunDir, RunFile), tr.runInfo(st))
}

// finiteWeights returns an error wrapping ErrDiverged when a weight of
// params, those after step, is NaN or infinite.
func finiteWeights(step int, params []float32) error {
	for i, w := range params {
		if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
			return fmt.Errorf("step %d %w: it made weight %d %v", step, ErrDiverged, i, w)
		}
	}
	return nil
}

// modelMeta is the metadata of a checkpoint's model at st: its step,
// epoch, the run's precision (the arithmetic that trained it), the
// encoders of its training data, and its evaluation reports when there
// are some.
func modelMeta(st State, enc dataset.Encoders, reports []retrieval.Report) (map[string]string, error) {
	meta := map[string]string{"step": strconv.Itoa(st.Step), "epoch": strconv.Itoa(st.Epoch), "precision": st.Options.PrecisionMode()}
	enc.AddTo(meta)
	if reports != nil {
		b, err := json.Marshal(reports)
		if err != nil {
			return nil, err
		}
		meta["metrics"] = string(b)
	}
	return meta, nil
}

// pointLink makes run/link a relative symlink to target, replacing any old
// one atomically (newLink, then its place).
func pointLink(run, link, target string) error {
	l, err := newLink(run, link, target)
	if err != nil {
		return err
	}
	return l.place()
}

// pendingLink is the new form of a run's link, under its temporary name
// (checkpoint.NewLinkName), not yet in place.
type pendingLink struct {
	tmp, path string
	forget    func() // of atomicfile.SymlinkRemovedOnExit
}

// newLink makes the new form of run/link, a relative symlink to target,
// under its temporary name, which a process ended at once before place or
// abandon removes while it leads nowhere.
func newLink(run, link, target string) (*pendingLink, error) {
	l := &pendingLink{tmp: filepath.Join(run, checkpoint.NewLinkName(link)), path: filepath.Join(run, link)}
	os.Remove(l.tmp)
	forget, err := atomicfile.SymlinkRemovedOnExit(target, l.tmp)
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	l.forget = forget
	return l, nil
}

// place renames the link into place, atomically replacing any old one.
func (l *pendingLink) place() error {
	l.forget()
	if err := os.Rename(l.tmp, l.path); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	atomicfile.SyncDir(filepath.Dir(l.path))
	return nil
}

// abandon removes the link: what it leads to was not made.
func (l *pendingLink) abandon() {
	os.Remove(l.tmp)
	l.forget()
}

// PendingLastLink is the checkpoint that a run killed between putting it
// in place and linking it as the last left unlinked in the run directory
// dir, when dir has no last link (the run's first checkpoint, then: a
// later one leaves the last link at the one before, which the resume
// continues from), or "". save made the link's new form beforehand; it
// counts when it leads to a whole checkpoint of the run's own (a
// checkpoints/step-N in dir, holding every file a resume reads, of one
// step).
func PendingLastLink(dir string) string {
	if _, err := os.Lstat(filepath.Join(dir, checkpoint.LastLink)); err == nil {
		return ""
	}
	target, err := os.Readlink(filepath.Join(dir, checkpoint.NewLinkName(checkpoint.LastLink)))
	if err != nil || filepath.Dir(target) != CheckpointsDir {
		return ""
	}
	if _, _, ok := parseCheckpointName(filepath.Base(target)); !ok {
		return ""
	}
	ck := filepath.Join(dir, target)
	if st, err := os.Lstat(ck); err != nil || !st.IsDir() || lacking(resumeFiles(dir, ck), ck) != "" || StepsAgree(ck) != nil {
		return ""
	}
	return target
}

// finishLastLink links the PendingLastLink of the run directory dir as
// its last, and reports it ("" when there is none). For the process
// holding the run's lock.
func finishLastLink(dir string) (string, error) {
	target := PendingLastLink(dir)
	if target == "" {
		return "", nil
	}
	if err := os.Rename(filepath.Join(dir, checkpoint.NewLinkName(checkpoint.LastLink)), filepath.Join(dir, checkpoint.LastLink)); err != nil {
		return "", fmt.Errorf("run directory: %w", err)
	}
	atomicfile.SyncDir(dir)
	return target, nil
}

// prune removes step checkpoints older than the Keep newest, never the
// ones last or best point at, nor st's best; and every checkpoint that an
// uninterrupted run does not make, once last points elsewhere: one with
// its evaluation pending (the one saved after that evaluation, or a later
// step's, replaced it), and one an interrupt saved between the run's
// checkpoint steps (scheduledCheckpoint). So a run stopped and resumed
// keeps the checkpoints of one never stopped, and an interrupt's
// checkpoint does not push an epoch's out of the Keep newest.
func (tr *Trainer) prune(st State) error {
	protected := map[string]bool{}
	if st.Best != nil {
		protected[filepath.Join(CheckpointsDir, filepath.Base(st.Best.Checkpoint))] = true
	}
	for _, l := range []string{checkpoint.LastLink, checkpoint.BestLink} {
		if t, err := os.Readlink(filepath.Join(tr.RunDir, l)); err == nil {
			protected[filepath.Join(CheckpointsDir, filepath.Base(t))] = true
		}
	}
	var steps []string
	for _, ck := range stepCheckpoints(tr.RunDir) {
		switch {
		case !ck.evalPending && st.scheduledCheckpoint(ck.step):
			steps = append(steps, ck.name)
		case !protected[ck.name]:
			tr.Log.Info("removing a checkpoint that a run never stopped does not keep (a stop saved it, or its evaluation was pending)", "checkpoint", ck.name)
			if err := tr.pruneCheckpoint(ck.name); err != nil {
				return err
			}
		}
	}
	for i, name := range steps {
		if protected[name] || i >= len(steps)-1-st.Options.Keep {
			continue
		}
		if err := tr.pruneCheckpoint(name); err != nil {
			return err
		}
	}
	return nil
}

// scheduledCheckpoint reports whether a run of st's options saves a
// checkpoint at step when nothing stops it: at each epoch end, and every
// CheckpointEvery steps.
func (st State) scheduledCheckpoint(step int) bool {
	spe, _, err := Steps(st.Options.Epochs, st.Data.Rows, st.Options.Batch)
	if err != nil {
		return true // (a state that check refuses: nothing is taken for an interrupt's)
	}
	return step%spe == 0 || st.Options.CheckpointEvery > 0 && step%st.Options.CheckpointEvery == 0
}

// deletingSuffix ends the name of a checkpoint directory being removed.
const deletingSuffix = ".deleting"

// removeCheckpoint deletes the checkpoint name (checkpoints/...) of the run
// in runDir without ever leaving a partial one under its name: it is
// renamed to a hidden name first (one atomic step), then removed. Hidden
// leftovers of a crash are swept by sweepRunDir.
//
// A checkpoint holding what no checkpoint holds (a user's notes, an
// export) is not removed: a *ForeignFileError says what.
func removeCheckpoint(runDir, name string) error {
	if err := checkOwnFiles(runDir, name); err != nil {
		return err
	}
	dir := filepath.Join(runDir, CheckpointsDir)
	trash := filepath.Join(dir, "."+filepath.Base(name)+deletingSuffix)
	if err := os.Rename(filepath.Join(runDir, name), trash); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// checkOwnFiles returns a *ForeignFileError when the checkpoint name holds
// a file no checkpoint has. A checkpoint's file may be a link (a run kept
// in git-annex or DVC): removing it removes the link.
func checkOwnFiles(runDir, name string) error {
	entries, err := os.ReadDir(filepath.Join(runDir, name))
	if err != nil {
		return err
	}
	for _, e := range entries {
		base, temp := atomicfile.TempOf(e.Name())
		if !temp {
			base = e.Name()
		}
		if !(e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) || !checkpoint.IsFile(base) {
			return &ForeignFileError{Checkpoint: filepath.Join(runDir, name), Name: e.Name()}
		}
	}
	return nil
}

// ForeignFileError is a checkpoint directory that holds a file no
// checkpoint has, which training does not remove.
type ForeignFileError struct {
	Checkpoint, Name string
}

func (e *ForeignFileError) Error() string {
	return fmt.Sprintf("%s holds %s, which no dinoclip checkpoint has", e.Checkpoint, e.Name)
}

// pruneCheckpoint is removeCheckpoint for a checkpoint the run no longer
// keeps: one holding someone else's file is kept, with a warning, and so
// is one the system will not let the run remove (files of another owner,
// a directory it may not write): the run goes on, as it needs no
// checkpoint it prunes. (Said once a run: pruning looks again at every
// save.)
func (tr *Trainer) pruneCheckpoint(name string) error {
	err := removeCheckpoint(tr.RunDir, name)
	if err == nil || errors.Is(err, fs.ErrNotExist) || tr.unpruned[name] { // (gone already: removed by hand)
		return nil
	}
	if tr.unpruned == nil {
		tr.unpruned = map[string]bool{}
	}
	tr.unpruned[name] = true
	var ff *ForeignFileError
	if errors.As(err, &ff) {
		tr.Log.Warn("keeping a checkpoint the run no longer needs: it holds a file no checkpoint has (remove the checkpoint yourself once you have what you need of it)", "checkpoint", ff.Checkpoint, "file", ff.Name)
	} else {
		tr.Log.Warn("could not remove a checkpoint the run no longer needs; training goes on (remove it yourself)", "checkpoint", filepath.Join(tr.RunDir, name), "err", err)
	}
	return nil
}

// sweepRunDir removes what a crash can leave in a run directory (locked
// by the trainer): among the checkpoints, the directories removeCheckpoint
// was deleting (".step-N.deleting", whole: a checkpoint the run let go,
// whose files it checked before), and
// those checkpoint.Save writes (".NAME.tmp-N") when they hold only a
// checkpoint's files (atomicfile.RemoveDir: nothing of anyone else's is
// removed); beside run.json, the temporaries of run.json and
// metrics.jsonl, however new (only a holder of the run's lock writes
// them: atomicfile.SweepOwn), and those of other names whose writer is
// gone (atomicfile.SweepStale: another process may write there). What it
// removed, and what it left, are said in the log; it returns the
// temporaries it left because another process may be writing them.
func (tr *Trainer) sweepRunDir() (live []string) {
	dir := filepath.Join(tr.RunDir, CheckpointsDir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if _, temp := atomicfile.TempOf(e.Name()); temp && e.IsDir() {
			atomicfile.RemoveDir(p, checkpoint.IsFile)
		}
		// (Only the names removeCheckpoint gives: another ending in
		// .deleting is someone else's.)
		trashed, deleting := strings.CutSuffix(e.Name(), deletingSuffix)
		if _, _, ok := parseCheckpointName(strings.TrimPrefix(trashed, ".")); ok && deleting && strings.HasPrefix(trashed, ".") && e.IsDir() {
			if err := os.RemoveAll(p); err != nil {
				tr.Log.Warn("could not remove a checkpoint a killed run was removing", "path", p, "err", err)
			}
		}
	}
	for _, s := range []atomicfile.Sweep{
		atomicfile.SweepOwn(tr.RunDir, RunFile, MetricsFile),
		atomicfile.SweepStaleExcept(tr.RunDir, RunFile, MetricsFile),
	} {
		for _, p := range s.Removed {
			tr.Log.Info("removed a temporary file left by a dinoclip killed while writing", "path", p)
		}
		for _, e := range s.Failed {
			tr.Log.Warn("could not remove a temporary file left by a dinoclip killed while writing", "path", e.Path, "err", e.Err)
		}
		for _, p := range s.Live {
			tr.Log.Warn("left a temporary file that another process may be writing now (remove it once none is)", "path", p)
		}
		live = append(live, s.Live...)
	}
	return live
}

// restore loads the run directory's last checkpoint into the engine and
// returns the state to continue from. The run continues with the options
// it was started with (run.json), on the same data and evaluation sets; a
// trainer state that does not fit them (a damaged or edited checkpoint) is
// refused.
func (tr *Trainer) restore() (State, error) {
	tr.sweepRunDir()
	if err := checkResumable(tr.RunDir); err != nil {
		return State{}, err
	}
	info, err := ReadRunInfo(tr.RunDir)
	if err != nil {
		return State{}, err
	}
	dir := filepath.Join(tr.RunDir, checkpoint.LastLink)
	ck, err := checkpoint.Load(dir)
	if err != nil {
		return State{}, olderCheckpointHint(tr.RunDir, err)
	}
	var st State
	if err := json.Unmarshal(ck.State, &st); err != nil {
		return State{}, olderCheckpointHint(tr.RunDir, fmt.Errorf("%s: trainer state: %w", dir, strictjson.Describe(err)))
	}
	if err := checkRecordedStep(dir, checkpoint.ModelFile, ck.Meta, st.Step); err != nil {
		return State{}, err
	}
	// The run's own, which its checkpoint records, whatever its data's
	// record says now (a fine-tuning run's Init model, which may have
	// named them, is not read again).
	tr.Encoders = dataset.EncodersOf(ck.Meta).Or(tr.Encoders)
	c := tr.Engine.Config()
	data := DataInfo{Rows: tr.Data.Rows, InputDim: tr.Data.InputDim, OutputDim: tr.Data.OutputDim}
	switch {
	case ck.Config != c || (info.Model != nn.Config{} && info.Model != c):
		return State{}, fmt.Errorf("%s: the checkpoint's model is %v and run.json's %v, this run's %v", dir, ck.Config, info.Model, c)
	case st.Data.InputDim != data.InputDim || st.Data.OutputDim != data.OutputDim:
		return State{}, fmt.Errorf("%s: the run was started on training data of %d rows (%d -> %d), %s has %d rows (%d -> %d), "+
			"which the run's model does not map: restore the run's data",
			dir, st.Data.Rows, st.Data.InputDim, st.Data.OutputDim, tr.Data.Dir, data.Rows, data.InputDim, data.OutputDim)
	case st.Data != data:
		// (--accept-changed-inputs takes other contents, not another size:
		// the run's batches are drawn over its rows.)
		return State{}, fmt.Errorf("%s: the run was started on training data of %d rows (%d -> %d), %s has %d rows (%d -> %d); "+
			"a run continues only on data of its own size, --accept-changed-inputs or not: restore its data, or start a new run "+
			"from its weights (dinoclip train --init %s --out NEW ...)",
			dir, st.Data.Rows, st.Data.InputDim, st.Data.OutputDim, tr.Data.Dir, data.Rows, data.InputDim, data.OutputDim, printable.ShellArg(dir))
	}
	// A run.json from before it recorded the sets (Evals absent, not
	// empty) takes the sets given.
	if info.Evals != nil {
		if err := checkEvalNames(info.Evals, tr.Evals); err != nil {
			return State{}, fmt.Errorf("--resume: %w", err)
		}
	}
	if err := st.Options.validate(c, tr.Data); err != nil {
		return State{}, fmt.Errorf("%s: %w", dir, err)
	}
	if err := tr.checkPrecision(st.Options); err != nil {
		return State{}, fmt.Errorf("--resume: %w", err)
	}
	if err := st.check(info.State, tr.Evals); err != nil {
		return State{}, fmt.Errorf("%s: the trainer state in %s does not fit the run (%s): %w; the checkpoint is damaged or was edited",
			dir, checkpoint.OptimizerFile, filepath.Join(tr.RunDir, RunFile), err)
	}
	// A checkpoint is saved under the name its state gives it
	// (checkpointName): one under another name (a pending evaluation's
	// renamed, or its state edited) would be taken for another
	// checkpoint, and removed or pruned while it is the one resumed from.
	if target, err := os.Readlink(dir); err == nil && filepath.Base(target) != filepath.Base(st.checkpointName()) {
		return State{}, fmt.Errorf("%s -> %s holds the trainer state of %s (a checkpoint renamed, or its state edited): give it its name back and point %s at it, or train into another --out",
			dir, target, st.checkpointName(), checkpoint.LastLink)
	}
	// The moments the run continues from: a float64 run's own (its
	// float32 copies are them rounded, and may overflow where they do not).
	momentsErr, momentsFile := checkMoments(st.Schedule, st.Options.AdamW.Beta2, ck.M, ck.V), checkpoint.OptimizerFile
	if tr.float64Engine() != nil && ck.Float64 != nil {
		momentsErr, momentsFile = checkMoments(st.Schedule, st.Options.AdamW.Beta2, ck.Float64.M, ck.Float64.V), checkpoint.Float64File
	}
	if momentsErr != nil {
		return State{}, fmt.Errorf("%s: %s: %w; the checkpoint is damaged or was edited", dir, momentsFile, momentsErr)
	}
	// The checkpoint and run.json of one run: the state each holds records
	// the inputs the run had trained on when it was written (a checkpoint
	// copied in from a run of the same options on other data, or that
	// run's run.json, said nothing). Not run.json's inputs: a resume that
	// accepts changed ones records them there at its start, and one killed
	// before its next checkpoint leaves the checkpoint's state behind them.
	if st.InputsSHA256 != "" && info.State.InputsSHA256 != "" && st.InputsSHA256 != info.State.InputsSHA256 && !tr.AcceptChangedInputs {
		return State{}, fmt.Errorf("%s: the checkpoint was trained on other training data or evaluation sets than %s records: it, or %s, is another run's; restore this run's own, or give --accept-changed-inputs to continue from the checkpoint on the inputs given",
			dir, filepath.Join(tr.RunDir, RunFile), RunFile)
	}
	if err := tr.checkInputs(info.Inputs, st.InputsSHA256); err != nil {
		return State{}, err
	}
	if err := tr.Engine.SetParameters(ck.Params); err != nil {
		return State{}, err
	}
	if err := tr.Engine.SetMoments(ck.M, ck.V); err != nil {
		return State{}, err
	}
	if e := tr.float64Engine(); e != nil {
		// The float32 values above are these rounded: the run continues
		// from its full-precision state.
		if ck.Float64 == nil {
			return State{}, fmt.Errorf("%s: the run trains in float64, but the checkpoint holds no %s", dir, checkpoint.Float64File)
		}
		copy(e.Model.Params, ck.Float64.Params)
		copy(e.M, ck.Float64.M)
		copy(e.V, ck.Float64.V)
	}
	if st.Options.EMA != 0 {
		if ck.EMA == nil {
			return State{}, fmt.Errorf("%s: the run keeps a moving average of its weights (--ema %v), but the checkpoint holds no %s", dir, st.Options.EMA, checkpoint.EMAFile)
		}
		if err := checkRecordedStep(dir, checkpoint.EMAFile, ck.EMAMeta, st.Step); err != nil {
			return State{}, err
		}
		// (The run's model file, say, copied in its place records the step
		// but no decay: resumed, the average would go on from other weights.)
		if decay, want := ck.EMAMeta["ema_decay"], strconv.FormatFloat(st.Options.EMA, 'g', -1, 64); decay != want {
			return State{}, fmt.Errorf("%s: %s records the decay %q, not the run's --ema %s: it is not the run's moving average; put the checkpoint's own %s back, or train into another --out",
				dir, checkpoint.EMAFile, decay, want, checkpoint.EMAFile)
		}
		tr.ema = ck.EMA
	}
	tr.Options = st.Options
	tr.initRef = info.Init
	return st, nil
}

// checkRecordedStep refuses a checkpoint's model or moving-average file
// (file, in the checkpoint dir, with metadata meta) that is not of the
// trainer state's step: each records its step (modelMeta), and the files
// of one checkpoint must be of one step (a file copied in from another
// checkpoint is not; resumed, it would continue from a mix of two points
// of the run). One without a step was not written by the run (dinoclip
// average writes none, say).
func checkRecordedStep(dir, file string, meta map[string]string, step int) error {
	recorded, ok := meta["step"]
	if !ok {
		return fmt.Errorf("%s: %s records no step: it was not written by this run (by dinoclip average?), so it does not go with %s; put the run's own %s back, or train into another --out",
			dir, file, checkpoint.OptimizerFile, file)
	}
	if recorded != strconv.Itoa(step) {
		return fmt.Errorf("%s: %s is of step %s, %s of step %d: the two files are not one checkpoint (either may be the one out of place); put the checkpoint's own files back, or train into another --out",
			dir, file, recorded, checkpoint.OptimizerFile, step)
	}
	return nil
}

// StepsAgree refuses the checkpoint dir whose model or moving-average
// file records another step than its optimizer state (checkRecordedStep),
// by their headers alone: what restore refuses on the files as read,
// found without reading them (info, a resume before its engine starts).
// Headers that cannot be read are restore's to report.
func StepsAgree(dir string) error {
	var st struct {
		Step int `json:"step"`
	}
	state, err := checkpoint.ReadState(filepath.Join(dir, checkpoint.OptimizerFile))
	if err == nil {
		err = json.Unmarshal(state, &st)
	}
	if err != nil {
		return nil
	}
	for _, file := range []string{checkpoint.ModelFile, checkpoint.EMAFile} {
		f, err := safetensors.Open(filepath.Join(dir, file))
		if err != nil {
			continue
		}
		meta := f.Metadata()
		f.Close()
		if err := checkRecordedStep(dir, file, meta, st.Step); err != nil {
			return err
		}
	}
	return nil
}

// alignCheckpoints puts back in line with st, the state resumed from, what
// a run killed between writing a checkpoint and relinking (or a last link
// pointed at an older checkpoint by hand) leaves ahead of it: step
// checkpoints after st's, which the resume writes again (checkpoint.Save
// keeps a directory that exists, and inputs accepted as changed make other
// bits), and a best link that is not st's best (it is relinked after
// last, and prune keeps what the links name). A best checkpoint that is
// gone (pruned after a later best, before last was pointed back by hand)
// leaves no best link: the next evaluation that beats the state's best
// value makes one. It then finishes what the save of st's checkpoint does
// after pointing last at it, which a kill may have cut short: the prune,
// and run.json.
func (tr *Trainer) alignCheckpoints(st State) error {
	// The best link first: a failure here leaves every checkpoint in place.
	if err := tr.alignBest(st); err != nil {
		return err
	}
	var later []string
	for _, ck := range stepCheckpoints(tr.RunDir) {
		// The evaluated checkpoint of a step comes after its pending one.
		if ck.step > st.Step || (ck.step == st.Step && st.PendingEval != nil && !ck.evalPending) {
			later = append(later, ck.name)
		}
	}
	// All looked at before any is removed: a refusal leaves them all.
	for _, name := range later {
		if err := checkOwnFiles(tr.RunDir, name); err != nil {
			if ff := (*ForeignFileError)(nil); errors.As(err, &ff) {
				return fmt.Errorf("%w: the resume makes that checkpoint again; move %s out of it to resume", err, ff.Name)
			}
			return err
		}
	}
	for _, name := range later {
		tr.Log.Info("removing a checkpoint after the one resumed from (the resume makes it again)", "checkpoint", name, "resumed_step", st.Step)
		if err := removeCheckpoint(tr.RunDir, name); err != nil {
			return err
		}
	}
	// What the save of st's checkpoint does after pointing last at it, in
	// case a kill cut it short: a finished run saves nothing more that
	// would do it later.
	if err := tr.prune(st); err != nil {
		return err
	}
	return writeJSON(filepath.Join(tr.RunDir, RunFile), tr.runInfo(st))
}

// alignBest points the best link at st's best checkpoint, or removes it
// (with a warning) when that checkpoint is gone, or when st has no best
// yet (the link is a later checkpoint's, about to be removed). A best that
// is no link (a run copied with its links followed) is left as it is.
func (tr *Trainer) alignBest(st State) error {
	best := filepath.Join(tr.RunDir, checkpoint.BestLink)
	if lst, err := os.Lstat(best); err == nil && lst.Mode()&os.ModeSymlink == 0 {
		return nil
	}
	if st.Best == nil {
		if err := os.Remove(best); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("run directory: %w", err)
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(tr.RunDir, st.Best.Checkpoint, checkpoint.ModelFile)); err != nil {
		tr.Log.Warn("the run's best checkpoint is gone: no best link until an evaluation beats it", "checkpoint", st.Best.Checkpoint,
			"metric", st.Best.Metric, "value", st.Best.Value, "error", err)
		if err := os.Remove(best); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("run directory: %w", err)
		}
		return nil
	}
	if target, _ := os.Readlink(best); target == st.Best.Checkpoint {
		return nil
	}
	tr.Log.Info("pointing best at the run's best checkpoint", "checkpoint", st.Best.Checkpoint)
	return pointLink(tr.RunDir, checkpoint.BestLink, st.Best.Checkpoint)
}

// checkInputs refuses a resume whose training data or evaluation sets do
// not hold the contents the run recorded (run, RunInfo.Inputs), unless
// AcceptChangedInputs; and sets the inputs run.json records from now on.
// A run that recorded none (run.json from before Inputs) resumes with a
// warning, unless its checkpoint's state records their hash (ckSHA256,
// State.InputsSHA256): then run.json lost them, and the inputs given must
// have that hash (the same contents, in files of the same names).
func (tr *Trainer) checkInputs(run *Inputs, ckSHA256 string) error {
	in, err := InputsOf(tr.Data, tr.Evals)
	if err != nil {
		return err
	}
	tr.inputs = in
	if run == nil && ckSHA256 != "" {
		if in.SHA256() == ckSHA256 {
			return nil
		}
		d := "run.json records no identity of the run's inputs, but its checkpoint records one, which the inputs given do not match (other contents)"
		if tr.AcceptChangedInputs {
			tr.Log.Warn("resuming on changed inputs (--accept-changed-inputs): the run will not end as it would have on its own; run.json records the new ones", "change", d)
			return nil
		}
		return fmt.Errorf("--resume: %s: run.json was edited; restore it, or give --accept-changed-inputs to continue on the inputs given (run.json then records them)", d)
	}
	if run == nil {
		tr.Log.Warn("run.json records no identity of the run's training data and evaluation sets (a run from before dinoclip recorded them): resuming without checking that they hold the run's contents; they are recorded from now on")
		return nil
	}
	d := run.diff(in, tr.Data.Dir, tr.Evals)
	switch {
	case d == "":
		return nil
	case tr.AcceptChangedInputs:
		tr.Log.Warn("resuming on changed inputs (--accept-changed-inputs): the run will not end as it would have on its own; run.json records the new ones", "change", d)
		return nil
	}
	return fmt.Errorf("--resume: %s: a resumed run on other contents would not end as the run would have; restore the run's files, or give --accept-changed-inputs to continue on these (run.json then records them)", d)
}

// checkEvalNames refuses evaluation sets other than the run's: the best
// metric and the records of a run refer to its sets by name.
func checkEvalNames(run []EvalRef, sets []*retrieval.Set) error {
	var want, got []string
	for _, r := range run {
		want = append(want, r.Name)
	}
	for _, s := range sets {
		got = append(got, s.Name)
	}
	if !slices.Equal(want, got) {
		return fmt.Errorf("the run evaluates on the sets %q, this resume on %q; a run keeps its evaluation sets (a resume without --eval takes them from run.json)", want, got)
	}
	return nil
}

// ModelConfigOf is the model shape recorded in a run directory's last
// checkpoint, for a resume that must build the same engine.
func ModelConfigOf(runDir string) (nn.Config, error) {
	return checkpoint.ReadConfig(filepath.Join(runDir, checkpoint.LastLink, checkpoint.ModelFile))
}

// finishLastLink is finishLastLink on the trainer's run directory, saying
// so in the log when it links a checkpoint.
func (tr *Trainer) finishLastLink() error {
	linked, err := finishLastLink(tr.RunDir)
	if linked != "" {
		tr.Log.Info("linked as the last the checkpoint a killed run had saved without linking it", "checkpoint", linked)
	}
	return err
}
