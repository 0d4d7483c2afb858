package train

import (
	"errors"
	"fmt"
	"time"

	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

// residency decides where the batches of a run come from, before its first
// step or when it resumes, and loads the training data onto the engine when
// they are to come from there. It returns the engine to take batches from
// by row index, or nil for host batches, and sets st.Float16 when the run
// goes on float16 values (see Options.Resident and State.Float16).
//
// The data goes onto the engine when the engine can hold it
// (nn.ResidentEngine), the options allow it, and the run has not trained
// on values that the float16 copy would change: a fresh run, one already on
// float16 values, or float16 data. When it does not fit (nn.ErrNotResident)
// the run reads host batches and the log says why; any other error, a NaN
// in the data for one, ends the run before its first step.
func (tr *Trainer) residency(st *State) (nn.ResidentEngine, error) {
	float16 := tr.Data.Float16()
	re, ok := tr.Engine.(nn.ResidentEngine)
	if !ok || st.Options.ResidentMode() == ResidentOff {
		if st.Float16 && !float16 {
			tr.Log.Info("reading batches on the host, rounded to float16 as the run started (its data was resident on the device)")
		}
		return nil, nil
	}
	if !st.Float16 && st.Step > 0 && !float16 {
		tr.Log.Info("training data stays on the host: the run has trained on its float32 values, which the device would hold rounded to float16")
		return nil, nil
	}
	start := time.Now()
	err := re.LoadResident(tr.Data.Rows, tr.workspaceRows(st.Options.Batch), tr.Data.ReadFloat16)
	if errors.Is(err, nn.ErrNotResident) {
		msg := "training data not resident on the device; reading batches on the host"
		if st.Float16 && !float16 {
			msg += ", rounded to float16 as the run started"
		}
		tr.Log.Info(msg, "reason", err.Error())
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading the training data onto the device: %w", err)
	}
	st.Float16 = true
	tr.Log.Info("training data resident on the device as float16", "rows", tr.Data.Rows,
		"rounded_to_float16", !float16, "seconds", logNum(time.Since(start).Seconds()))
	return re, nil
}

// workspaceRows is the largest batch the engine runs in the training loop:
// the training batch, or a batch of evaluation's projection.
func (tr *Trainer) workspaceRows(batch int) int {
	for _, s := range tr.Evals {
		batch = max(batch, min(retrieval.ProjectBatch, s.Images))
	}
	return batch
}
