package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

// Names inside a run directory (docs/FORMAT.md).
const (
	CheckpointsDir = "checkpoints"
	RunFile        = "run.json"
)

func checkpointName(step int) string {
	return filepath.Join(CheckpointsDir, fmt.Sprintf("step-%08d", step))
}

// checkNewRunDir refuses a run directory that already holds checkpoints
// rather than mix a new run with it.
func checkNewRunDir(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, checkpoint.LastLink)); err == nil {
		return fmt.Errorf("run directory %s already holds a run: resume it with --resume, or choose another --out", dir)
	}
	return nil
}

// startRunDir prepares a new run directory (see checkNewRunDir).
func startRunDir(dir string, st State) error {
	if err := checkNewRunDir(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, CheckpointsDir), 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	// Leftovers of a run that died before its first checkpoint.
	os.Remove(filepath.Join(dir, MetricsFile))
	return writeJSON(filepath.Join(dir, RunFile), st)
}

// save writes a checkpoint of the engine at st, points last (and best, when
// improved is not nil) at it, and prunes step checkpoints beyond Keep. The
// evaluation reports of an epoch end go into the model's metadata.
func (tr *Trainer) save(st State, improved *Best, reports []retrieval.Report) error {
	name := checkpointName(st.Step)
	if improved != nil {
		improved.Checkpoint = name
		st.Best = improved
	}
	n := tr.Engine.Config().NumParams()
	params, m, v := make([]float32, n), make([]float32, n), make([]float32, n)
	if err := tr.Engine.Parameters(params); err != nil {
		return err
	}
	if err := tr.Engine.Moments(m, v); err != nil {
		return err
	}
	state, err := json.Marshal(st)
	if err != nil {
		return err
	}
	meta := map[string]string{"step": strconv.Itoa(st.Step), "epoch": strconv.Itoa(st.Epoch)}
	if reports != nil {
		b, err := json.Marshal(reports)
		if err != nil {
			return err
		}
		meta["metrics"] = string(b)
	}
	ck := &checkpoint.Checkpoint{Config: tr.Engine.Config(), Params: params, Meta: meta, M: m, V: v, State: state}
	dir := filepath.Join(tr.RunDir, name)
	if err := checkpoint.Save(dir, ck); err != nil {
		return err
	}
	if err := pointLink(tr.RunDir, checkpoint.LastLink, name); err != nil {
		return err
	}
	if improved != nil {
		if err := pointLink(tr.RunDir, checkpoint.BestLink, name); err != nil {
			return err
		}
	}
	tr.Log.Debug("checkpoint", "dir", dir, "step", st.Step)
	return tr.prune(st)
}

// pointLink makes run/link a relative symlink to target, replacing any old
// one atomically (a new link under a temporary name, renamed over it).
func pointLink(run, link, target string) error {
	tmp := filepath.Join(run, "."+link+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(run, link)); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	atomicfile.SyncDir(run)
	return nil
}

// prune removes step checkpoints older than the Keep newest, never the
// ones last or best point at.
func (tr *Trainer) prune(st State) error {
	dir := filepath.Join(tr.RunDir, CheckpointsDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var steps []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") {
			steps = append(steps, e.Name())
		}
	}
	sort.Strings(steps)
	protected := map[string]bool{}
	for _, l := range []string{checkpoint.LastLink, checkpoint.BestLink} {
		if t, err := os.Readlink(filepath.Join(tr.RunDir, l)); err == nil {
			protected[filepath.Base(t)] = true
		}
	}
	for i, name := range steps {
		if protected[name] || i >= len(steps)-1-st.Options.Keep {
			continue
		}
		if err := removeCheckpoint(dir, name); err != nil {
			return err
		}
	}
	return nil
}

// removeCheckpoint deletes a checkpoint directory without ever leaving a
// partial one under its name: it is renamed to a hidden name first (one
// atomic step), then removed. Hidden leftovers of a crash are swept by
// sweepCheckpoints.
func removeCheckpoint(dir, name string) error {
	trash := filepath.Join(dir, "."+name+".deleting")
	if err := os.Rename(filepath.Join(dir, name), trash); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// sweepCheckpoints removes what a crash can leave among the checkpoints:
// hidden temporary directories being written or deleted.
func sweepCheckpoints(runDir string) {
	dir := filepath.Join(runDir, CheckpointsDir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// restore loads the run directory's last checkpoint into the engine and
// returns the state to continue from. The run continues with the options
// it was started with; other training data or another model is refused.
func (tr *Trainer) restore() (State, error) {
	sweepCheckpoints(tr.RunDir)
	dir := filepath.Join(tr.RunDir, checkpoint.LastLink)
	ck, err := checkpoint.Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, fmt.Errorf("nothing to resume in %s: it has no checkpoint (%s)", tr.RunDir, checkpoint.LastLink)
	}
	if err != nil {
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(ck.State, &st); err != nil {
		return State{}, fmt.Errorf("%s: trainer state: %w", dir, err)
	}
	c := tr.Engine.Config()
	data := DataInfo{Rows: tr.Data.Rows, InputDim: tr.Data.InputDim, OutputDim: tr.Data.OutputDim}
	switch {
	case ck.Config != c:
		return State{}, fmt.Errorf("%s: the checkpoint's model is %v, this run's %v", dir, ck.Config, c)
	case st.Data != data:
		return State{}, fmt.Errorf("%s: the run was started on training data of %d rows (%d -> %d), %s has %d rows (%d -> %d)",
			dir, st.Data.Rows, st.Data.InputDim, st.Data.OutputDim, tr.Data.Dir, data.Rows, data.InputDim, data.OutputDim)
	}
	if err := st.Options.validate(c, tr.Data); err != nil {
		return State{}, err
	}
	if err := tr.Engine.SetParameters(ck.Params); err != nil {
		return State{}, err
	}
	if err := tr.Engine.SetMoments(ck.M, ck.V); err != nil {
		return State{}, err
	}
	tr.Options = st.Options
	return st, nil
}

// ModelConfigOf is the model shape recorded in a run directory's last
// checkpoint, for a resume that must build the same engine.
func ModelConfigOf(runDir string) (nn.Config, error) {
	return checkpoint.ReadConfig(filepath.Join(runDir, checkpoint.LastLink, checkpoint.ModelFile))
}
