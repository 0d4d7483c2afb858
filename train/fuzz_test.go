package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/internal/codectest"
	"github.com/dinoclip/dinoclip/internal/strictjson"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/dinoclip/dinoclip/retrieval"
)

// The fuzz targets of the state a run keeps on disk that a user, a disk
// or a crash can damage: run.json (ReadRunInfo), the trainer state of a
// checkpoint (what restore decodes and checks), and metrics.jsonl
// (ScanMetrics, and what a resume and dinoclip info do with its lines).
// Each reads small inputs in microseconds (make fuzz-short runs 200,000 of
// each).

// fuzzRunJSON is run.json of a real run (dinoclip synth --rows 200
// --eval-images 20; dinoclip train --epochs 2 --batch 50 --hidden-dim 16
// --blocks 1; the paths shortened), as the trainer writes it.
const fuzzRunJSON = `{
  "model": {
    "input_dim": 768,
    "hidden_dim": 16,
    "output_dim": 512,
    "num_residual_blocks": 1
  },
  "data_dir": "/data/synth/train",
  "evals": [
    {
      "name": "synth",
      "dir": "/data/synth/eval"
    }
  ],
  "device": "cpu",
  "inputs": {
    "data": [
      {
        "name": "shard-00000.dino.npy",
        "size": 614528,
        "sample_sha256": "68fe161b0d50ff350c699ef4396ff4603a63fdd778f82d40c47fb308a97fa3c1"
      },
      {
        "name": "shard-00000.clip.npy",
        "size": 409728,
        "sample_sha256": "a3c12f9c2cba57b3594411fa29fec7ab2aafd430068cf526d3713521a220ee86"
      }
    ],
    "evals": [
      {
        "name": "synth",
        "sha256": "148671757d9b26a3c6487943cdf6a041249755c9f7c8bd02e97ec65ee886e5a7"
      }
    ]
  },
  "step": 8,
  "epoch": 2,
  "batch": 0,
  "schedule": {
    "max_lr": 0.001,
    "total_steps": 8,
    "pct_start": 0.3,
    "div_factor": 25,
    "final_div_factor": 10000,
    "base_momentum": 0.85,
    "max_momentum": 0.95
  },
  "options": {
    "epochs": 2,
    "batch": 50,
    "max_lr": 0.001,
    "adamw": {
      "beta2": 0.999,
      "eps": 1e-8,
      "weight_decay": 0.01
    },
    "seed": 0,
    "checkpoint_every": 0,
    "keep": 2,
    "best_metric": "",
    "log_every": 10,
    "resident": "auto",
    "precision": "fp32",
    "best_from": "raw",
    "loss": "mse"
  },
  "data": {
    "rows": 200,
    "input_dim": 768,
    "output_dim": 512
  },
  "best": {
    "metric": "r5",
    "value": 23.5,
    "step": 4,
    "epoch": 1,
    "checkpoint": "checkpoints/step-00000004"
  },
  "window": {
    "sum": 1.5627254456956363,
    "rows": 400
  },
  "epoch_loss": {
    "sum": 0,
    "rows": 0
  },
  "inputs_sha256": "0ffbc14862ed10f559fbe2de220ad448bae89eb604432037030306b191bb9e2b",
  "log_records": 2,
  "log_sha256": "137b114af17afd18f9b557d2c64406f65bee2475166288d46759ea885d937cfc"
}
`

// fuzzStates are trainer states of real checkpoints (the "state" of their
// optimizer.safetensors) of the run of fuzzRunJSON and of one with
// --epochs 3 --batch 40 --hidden-dim 8 --loss mse+infonce --infonce-weight
// 0.5 --ema 0.9 --best-from ema --checkpoint-every 3 --best-metric
// synth/t2i@5 (an epoch end, a checkpoint within an epoch, the last), and
// one of that run edited into a state with its evaluation pending.
var fuzzStates = []string{
	`{"step":8,"epoch":2,"batch":0,"schedule":{"max_lr":0.001,"total_steps":8,"pct_start":0.3,"div_factor":25,"final_div_factor":10000,"base_momentum":0.85,"max_momentum":0.95},"options":{"epochs":2,"batch":50,"max_lr":0.001,"adamw":{"beta2":0.999,"eps":1e-8,"weight_decay":0.01},"seed":0,"checkpoint_every":0,"keep":2,"best_metric":"","log_every":10,"resident":"auto","precision":"fp32","best_from":"raw","loss":"mse"},"data":{"rows":200,"input_dim":768,"output_dim":512},"best":{"metric":"r5","value":23.5,"step":4,"epoch":1,"checkpoint":"checkpoints/step-00000004"},"window":{"sum":1.5627254456956363,"rows":400},"epoch_loss":{"sum":0,"rows":0},"inputs_sha256":"0ffbc14862ed10f559fbe2de220ad448bae89eb604432037030306b191bb9e2b","log_records":2,"log_sha256":"137b114af17afd18f9b557d2c64406f65bee2475166288d46759ea885d937cfc"}`,
	`{"step":10,"epoch":2,"batch":0,"schedule":{"max_lr":0.001,"total_steps":15,"pct_start":0.3,"div_factor":25,"final_div_factor":10000,"base_momentum":0.85,"max_momentum":0.95},"options":{"epochs":3,"batch":40,"max_lr":0.001,"adamw":{"beta2":0.999,"eps":1e-8,"weight_decay":0.01},"seed":0,"checkpoint_every":3,"keep":2,"best_metric":"synth/t2i@5","log_every":10,"resident":"auto","precision":"fp32","ema":0.9,"best_from":"ema","loss":"mse+infonce","infonce_weight":0.5},"data":{"rows":200,"input_dim":768,"output_dim":512},"best":{"metric":"synth/t2i@5","value":30,"step":10,"epoch":2,"checkpoint":"checkpoints/step-00000010"},"window":{"sum":0,"rows":0},"epoch_loss":{"sum":0,"rows":0},"logit_scale":{"value":2.6559676201411393,"m":0.00391072819019747,"v":0.000015422772240577192},"inputs_sha256":"0ffbc14862ed10f559fbe2de220ad448bae89eb604432037030306b191bb9e2b","log_records":3,"log_sha256":"97222276ef54ad13020c99d501fdcb75b2f03f75959cc89f836da1b61572a573"}`,
	`{"step":12,"epoch":2,"batch":2,"schedule":{"max_lr":0.001,"total_steps":15,"pct_start":0.3,"div_factor":25,"final_div_factor":10000,"base_momentum":0.85,"max_momentum":0.95},"options":{"epochs":3,"batch":40,"max_lr":0.001,"adamw":{"beta2":0.999,"eps":1e-8,"weight_decay":0.01},"seed":0,"checkpoint_every":3,"keep":2,"best_metric":"synth/t2i@5","log_every":10,"resident":"auto","precision":"fp32","ema":0.9,"best_from":"ema","loss":"mse+infonce","infonce_weight":0.5},"data":{"rows":200,"input_dim":768,"output_dim":512},"best":{"metric":"synth/t2i@5","value":30,"step":10,"epoch":2,"checkpoint":"checkpoints/step-00000010"},"window":{"sum":143.75284783133338,"rows":80},"epoch_loss":{"sum":143.75284783133338,"rows":80},"logit_scale":{"value":2.6559415418819494,"m":0.00011030272635871997,"v":0.00001639228634592296},"inputs_sha256":"0ffbc14862ed10f559fbe2de220ad448bae89eb604432037030306b191bb9e2b","log_records":3,"log_sha256":"97222276ef54ad13020c99d501fdcb75b2f03f75959cc89f836da1b61572a573"}`,
	`{"step":15,"epoch":3,"batch":0,"schedule":{"max_lr":0.001,"total_steps":15,"pct_start":0.3,"div_factor":25,"final_div_factor":10000,"base_momentum":0.85,"max_momentum":0.95},"options":{"epochs":3,"batch":40,"max_lr":0.001,"adamw":{"beta2":0.999,"eps":1e-8,"weight_decay":0.01},"seed":0,"checkpoint_every":3,"keep":2,"best_metric":"synth/t2i@5","log_every":10,"resident":"auto","precision":"fp32","ema":0.9,"best_from":"ema","loss":"mse+infonce","infonce_weight":0.5},"data":{"rows":200,"input_dim":768,"output_dim":512},"best":{"metric":"synth/t2i@5","value":32,"step":15,"epoch":3,"checkpoint":"checkpoints/step-00000015"},"window":{"sum":357.23650769860785,"rows":200},"epoch_loss":{"sum":0,"rows":0},"logit_scale":{"value":2.655953320570489,"m":-0.005417537105615776,"v":0.00002032306813083948},"inputs_sha256":"0ffbc14862ed10f559fbe2de220ad448bae89eb604432037030306b191bb9e2b","log_records":4,"log_sha256":"83b0e69a6b0126057a6347a3f3dc11926dd428c0585a8cb7f8ef1bd270aacfd1"}`,
	`{"step":10,"epoch":2,"batch":0,"schedule":{"max_lr":0.001,"total_steps":15,"pct_start":0.3,"div_factor":25,"final_div_factor":10000,"base_momentum":0.85,"max_momentum":0.95},"options":{"epochs":3,"batch":40,"max_lr":0.001,"adamw":{"beta2":0.999,"eps":1e-8,"weight_decay":0.01},"seed":0,"checkpoint_every":3,"keep":2,"best_metric":"synth/t2i@5","log_every":10,"resident":"auto","precision":"fp32","ema":0.9,"best_from":"ema","loss":"mse+infonce","infonce_weight":0.5},"data":{"rows":200,"input_dim":768,"output_dim":512},"best":{"metric":"synth/t2i@5","value":28,"step":5,"epoch":1,"checkpoint":"checkpoints/step-00000005"},"window":{"sum":0,"rows":0},"epoch_loss":{"sum":0,"rows":0},"pending_eval":{"epoch_loss":{"sum":361.1,"rows":200}},"logit_scale":{"value":2.6559676201411393,"m":0.00391072819019747,"v":0.000015422772240577192},"inputs_sha256":"0ffbc14862ed10f559fbe2de220ad448bae89eb604432037030306b191bb9e2b","log_records":3,"log_sha256":"97222276ef54ad13020c99d501fdcb75b2f03f75959cc89f836da1b61572a573"}`,
}

// fuzzMetrics is metrics.jsonl of a real run (the second of fuzzStates'
// runs: its first two records), then a record cut off by a kill.
const fuzzMetrics = `{"ema":{"sets":[{"name":"synth","clip":{"images":20,"captions":100,"images_without_captions":0,"recall":[{"k":1,"text_to_image_percent":93,"image_to_text_percent":95},{"k":5,"text_to_image_percent":100,"image_to_text_percent":100},{"k":10,"text_to_image_percent":100,"image_to_text_percent":100}]},"projected":{"images":20,"captions":100,"images_without_captions":0,"recall":[{"k":1,"text_to_image_percent":6,"image_to_text_percent":0},{"k":5,"text_to_image_percent":28,"image_to_text_percent":5},{"k":10,"text_to_image_percent":60,"image_to_text_percent":30}]},"percent_of_clip":{"k":5,"text_to_image_percent":28,"image_to_text_percent":5}}],"value":28},"epoch":1,"metric":"synth/t2i@5","sets":[{"name":"synth","clip":{"images":20,"captions":100,"images_without_captions":0,"recall":[{"k":1,"text_to_image_percent":93,"image_to_text_percent":95},{"k":5,"text_to_image_percent":100,"image_to_text_percent":100},{"k":10,"text_to_image_percent":100,"image_to_text_percent":100}]},"projected":{"images":20,"captions":100,"images_without_captions":0,"recall":[{"k":1,"text_to_image_percent":6,"image_to_text_percent":0},{"k":5,"text_to_image_percent":29,"image_to_text_percent":10},{"k":10,"text_to_image_percent":60,"image_to_text_percent":35}]},"percent_of_clip":{"k":5,"text_to_image_percent":29,"image_to_text_percent":10}}],"step":5,"time":"2026-12-07T21:01:55Z","train_loss":1.8593612527376484,"type":"eval","value":29}
{"beta1":0.9037365046793212,"epoch":2,"logit_scale":2.6559676201411393,"loss":1.8347052984414673,"lr":0.00046263710266697503,"samples_per_s":23446.126984106515,"step":10,"time":"2026-12-07T21:01:55Z","type":"train"}
{"epoch":2,"metric":"synth/t2i@5","sets":[{"name":"synth","clip":{"images":20,"captions":100,"imag`

// FuzzReadRunInfo reads fuzzed bytes as a run directory's run.json. A
// document read is one that reads back the same once written again (as
// the trainer rewrites it after every checkpoint), and what a resume then
// does with its options and sets (optionsDiff, checkEvalNames) works on
// it; one refused is refused with a message naming the file.
func FuzzReadRunInfo(f *testing.F) {
	f.Add([]byte(fuzzRunJSON))
	for _, st := range fuzzStates {
		f.Add([]byte(st)) // (a run.json from before the model, data and sets were recorded)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"model":{"input_dim":1},"init":{"path":"/m","params_sha256":"00"},"evals":null,"step":-1}`))
	f.Add([]byte(fuzzRunJSON[:len(fuzzRunJSON)/2])) // truncated
	f.Add([]byte{})
	dir := f.TempDir()
	path := filepath.Join(dir, RunFile)
	var seed RunInfo
	if err := json.Unmarshal([]byte(fuzzRunJSON), &seed); err != nil {
		f.Fatal(err)
	}
	sets := []*retrieval.Set{{Name: "synth"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		codectest.WriteFile(t, path, b)
		info, err := ReadRunInfo(dir)
		if err != nil {
			codectest.CheckReadError(t, err, path)
			return
		}
		// Written again as the trainer writes it, it reads back the same.
		again, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			t.Fatalf("run.json read as %+v cannot be written again: %v", info, err)
		}
		codectest.WriteFile(t, path, again)
		back, err := ReadRunInfo(dir)
		if err != nil {
			t.Fatalf("run.json read, written again, is refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(back, info) {
			t.Fatalf("run.json read, written again, reads as another:\n%+v\n%+v", info, back)
		}
		// What a resume says of its options against the checkpoint's
		// (runFileAgrees): another option is named, the same none.
		if diff := optionsDiff(seed.Options, info.Options); (diff == "") != (seed.Options == info.Options) {
			t.Fatalf("optionsDiff(%+v, %+v) = %q", seed.Options, info.Options, diff)
		}
		if info.Evals != nil {
			if err := checkEvalNames(info.Evals, sets); err != nil && err.Error() == "" {
				t.Fatal("checkEvalNames: an empty error")
			}
		}
		if err := CheckRecordedPath("training data", info.DataDir); err != nil && err.Error() == "" {
			t.Fatal("CheckRecordedPath: an empty error")
		}
	})
}

// FuzzTrainerState decodes fuzzed bytes as the trainer state of a
// checkpoint (optimizer.safetensors's "state"), with one of its numbers
// set to a fuzzed one (fuzzEditState: mutations of the text rarely make
// numbers that pass the checks before the one they reach), and checks it
// as a resume does (restore): against a run on 200 rows of 768 -> 512 with one
// evaluation set "synth", whose run.json holds the same state (a run.json
// edited to match) and, where the options agree, the state of a real run.
// A state accepted is one a run can continue from: a position within the
// schedule, a finite learning rate there, checkpoint names that parse back,
// and the same state once saved again.
func FuzzTrainerState(f *testing.F) {
	for i, st := range fuzzStates {
		f.Add([]byte(st), uint8(0), int64(0), 0.0)
		// And with one number edited (fuzzEditState), as a hand or the
		// disk would.
		f.Add([]byte(st), uint8(1+i), int64(i*7-3), 1e300)
	}
	f.Add([]byte(`{}`), uint8(0), int64(0), 0.0)
	f.Add([]byte(`{"step":1e400}`), uint8(0), int64(0), 0.0)
	f.Add([]byte(fuzzStates[2][:200]), uint8(0), int64(0), 0.0)
	f.Fuzz(checkTrainerState)
}

// checkTrainerState is FuzzTrainerState's check of the state b with edit,
// n and x (fuzzEditState).
func checkTrainerState(t *testing.T, b []byte, edit uint8, n int64, x float64) {
	c := nn.Config{InputDim: 768, HiddenDim: 16, OutputDim: 512, Blocks: 1}
	evals := []*retrieval.Set{{Name: "synth"}}
	ck := filepath.Join("/runs/r", "last")
	real := fuzzRealState
	// Moments a run reaches, and ones no run does.
	m := []float32{0, 1e-3, -2e-3, 1e-20, 0}
	v := []float32{0, 1e-6, 4e-6, 0, float32(math.Inf(1))}
	data := &Dataset{Dir: "/data/synth/train", Rows: 200, InputDim: 768, OutputDim: 512}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		// (As restore says it.)
		codectest.CheckReadError(t, fmt.Errorf("%s: trainer state: %w", ck, strictjson.Describe(err)), ck)
		return
	}
	if !fuzzEditState(&st, data, edit, n, x) {
		return
	}
	if st.Data != (DataInfo{Rows: data.Rows, InputDim: data.InputDim, OutputDim: data.OutputDim}) {
		return
	}
	if err := st.Options.validate(c, data); err != nil {
		if err.Error() == "" {
			t.Fatal("validate: an empty error")
		}
		return
	}
	if st.Options == real.Options {
		if err := st.check(real, evals); err != nil && err.Error() == "" {
			t.Fatal("check: an empty error")
		}
	}
	err := st.check(st, evals)
	// (Refused or not, the moments are checked against the schedule.)
	if merr := checkMoments(st.Schedule, st.Options.AdamW.Beta2, m, v); merr != nil && merr.Error() == "" {
		t.Fatal("checkMoments: an empty error")
	}
	if err != nil {
		if err.Error() == "" {
			t.Fatal("check: an empty error")
		}
		return
	}
	o := st.Options
	spe, total, serr := Steps(o.Epochs, st.Data.Rows, o.Batch)
	switch {
	case serr != nil:
		t.Fatalf("a state accepted with options Steps refuses: %v", serr)
	case st.Schedule.TotalSteps != total || st.Schedule.Validate() != nil:
		t.Fatalf("a state accepted with the schedule %+v of %d steps", st.Schedule, total)
	case st.Step < 0 || st.Step > total || st.Step != st.Epoch*spe+st.Batch:
		t.Fatalf("a state accepted at step %d (epoch %d, batch %d) of %d (%d a epoch)", st.Step, st.Epoch, st.Batch, total, spe)
	}
	if step, pending, ok := parseCheckpointName(filepath.Base(st.checkpointName())); !ok || step != st.Step || pending != (st.PendingEval != nil) {
		t.Fatalf("the checkpoint name %q of a state at step %d parses as %d, %v, %v", st.checkpointName(), st.Step, step, pending, ok)
	}
	if bst := st.Best; bst != nil {
		step, pending, ok := parseCheckpointName(filepath.Base(bst.Checkpoint))
		if !ok || pending || step != bst.Step || bst.Step > st.Step || math.IsNaN(bst.Value) || math.IsInf(bst.Value, 0) {
			t.Fatalf("a state accepted with the best checkpoint %+v at step %d", *bst, st.Step)
		}
	}
	if st.Step < total {
		p := o.AdamW.Step(st.Schedule, st.Step+1)
		lo, hi := math.Min(st.Schedule.BaseMomentum, st.Schedule.MaxMomentum), math.Max(st.Schedule.BaseMomentum, st.Schedule.MaxMomentum)
		if math.IsNaN(p.LR) || math.IsInf(p.LR, 0) || p.LR < 0 || !(p.Beta1 >= lo-1e-12 && p.Beta1 <= hi+1e-12) {
			t.Fatalf("a state accepted whose next step has lr %v, beta1 %v (schedule %+v)", p.LR, p.Beta1, st.Schedule)
		}
	}
	for _, l := range []LossSum{st.Window, st.EpochLoss} {
		if l.Rows > 0 && (math.IsNaN(l.mean()) || math.IsInf(l.mean(), 0)) {
			t.Fatalf("a state accepted whose running loss %+v has no finite mean", l)
		}
	}
	if !st.KeepsRecord(st.Step, "train") || st.KeepsRecord(st.Step+1, "eval") {
		t.Fatalf("a resume from step %d keeps the wrong records", st.Step)
	}
	// Saved again (as save marshals it), it reads back the same, and
	// is accepted again.
	again, err := json.Marshal(st)
	if err != nil {
		t.Fatalf("a state accepted cannot be saved: %v", err)
	}
	var back State
	if err := json.Unmarshal(again, &back); err != nil {
		t.Fatalf("a state saved again cannot be read: %v", err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Fatalf("a state saved again reads as another:\n%+v\n%+v", st, back)
	}
	if err := back.check(st, evals); err != nil {
		t.Fatalf("a state saved again is refused: %v", err)
	}
}

// fuzzRealState is the trainer state of a real run's last checkpoint,
// which FuzzTrainerState also checks states of its options against.
var fuzzRealState = func() State {
	var st State
	if err := json.Unmarshal([]byte(fuzzStates[3]), &st); err != nil {
		panic(err)
	}
	return st
}()

// fuzzEditState sets the number of st that edit picks (none for 0) to n
// or x, as an edit of the JSON would; the training data's rows (data, which
// restore compares with the state's first) move with the state's. It
// reports false for a value JSON cannot hold (a NaN, an infinity).
func fuzzEditState(st *State, data *Dataset, edit uint8, n int64, x float64) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return edit == 0
	}
	i := int(n)
	ints := []*int{&st.Step, &st.Epoch, &st.Batch, &st.Schedule.TotalSteps, &st.Options.Epochs, &st.Options.Batch,
		&st.Options.LogEvery, &st.Options.CheckpointEvery, &st.Window.Rows, &st.EpochLoss.Rows, &st.LogRecords}
	floats := []*float64{&st.Schedule.MaxLR, &st.Schedule.PctStart, &st.Schedule.DivFactor, &st.Schedule.MaxMomentum, &st.Schedule.BaseMomentum,
		&st.Options.MaxLR, &st.Options.AdamW.Beta2, &st.Options.AdamW.Eps, &st.Options.EMA, &st.Options.InfoNCEWeight, &st.Window.Sum, &st.EpochLoss.Sum}
	if st.Best != nil {
		ints = append(ints, &st.Best.Step, &st.Best.Epoch)
		floats = append(floats, &st.Best.Value)
	}
	if st.LogitScale != nil {
		floats = append(floats, &st.LogitScale.Value, &st.LogitScale.M, &st.LogitScale.V)
	}
	if st.PendingEval != nil {
		ints = append(ints, &st.PendingEval.EpochLoss.Rows)
		floats = append(floats, &st.PendingEval.EpochLoss.Sum)
	}
	switch k := int(edit); {
	case k == 0:
	case k == 1:
		if n < 1 || n > 1<<40 {
			return false
		}
		st.Data.Rows, data.Rows = i, i
	case k-2 < len(ints):
		*ints[k-2] = i
	case k-2-len(ints) < len(floats):
		*floats[k-2-len(ints)] = x
	}
	return true
}

// FuzzScanMetrics reads fuzzed bytes as a run's metrics.jsonl: through
// ScanMetrics, which must hand over every line as written (its line end
// cut); through what a resume and dinoclip info read of each line
// (recordOf, keptStep, withoutClock); through ScanMetricsRecords, as info
// counts the evaluations kept (countEvals), whose count of damaged lines
// must be those that are no record but a torn last one. (Not through
// keepMetrics, a resume's: it rewrites the log with fsyncs, milliseconds
// an input.)
func FuzzScanMetrics(f *testing.F) {
	f.Add([]byte(fuzzMetrics), 10, false)
	f.Add([]byte(fuzzMetrics+"\n"), 5, true)
	f.Add([]byte(fuzzMetrics[:strings.LastIndexByte(fuzzMetrics, '\n')+1]), 5, false)
	f.Add([]byte("\n\r\n{\"step\":1}\r\nnote\n{\"step\":2,\"type\":\"eval\"}"), 2, true)
	f.Add([]byte(`{"time":"x","step":3,"samples_per_s":1e21}`+"\n"+`{"step":-1,"type":"train"`), 0, false)
	path := filepath.Join(f.TempDir(), MetricsFile)
	f.Fuzz(func(t *testing.T, b []byte, step int, evalPending bool) {
		// What bufio.ScanLines makes of b, said otherwise.
		var want [][]byte
		if len(b) > 0 {
			want = bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'})
			for i := range want {
				want[i] = bytes.TrimSuffix(want[i], []byte{'\r'})
			}
		}
		var got [][]byte
		err := ScanMetrics(bytes.NewReader(b), path, func(line []byte) error {
			got = append(got, bytes.Clone(line))
			typ, recStep, ok := recordOf(line)
			if !ok && (typ != "" || recStep != 0) {
				t.Fatalf("recordOf(%q) = %q, %d, false", line, typ, recStep)
			}
			keptStep(line, step, evalPending)
			checkWithoutClock(t, line)
			return nil
		})
		if err != nil {
			t.Fatalf("ScanMetrics of %d bytes: %v", len(b), err)
		}
		if len(got) != len(want) {
			t.Fatalf("ScanMetrics gave %d lines, the file holds %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d: ScanMetrics gave %q, the file holds %q", i+1, got[i], want[i])
			}
		}
		// dinoclip info's count (countEvals), from the file.
		codectest.WriteFile(t, path, b)
		st := State{Step: step}
		if evalPending {
			st.PendingEval = &PendingEval{}
		}
		records := 0
		damaged, err := ScanMetricsRecords(path, func(typ string, recStep int) error {
			st.KeepsRecord(recStep, typ)
			records++
			return nil
		})
		if err != nil {
			t.Fatalf("ScanMetricsRecords: %v", err)
		}
		wantRecords, wantDamaged := 0, 0
		for i, line := range want {
			if _, _, ok := recordOf(line); ok {
				wantRecords++
			} else if len(bytes.TrimSpace(line)) > 0 && (i < len(want)-1 || bytes.HasSuffix(b, []byte{'\n'})) {
				wantDamaged++
			}
		}
		if records != wantRecords || damaged != wantDamaged {
			t.Fatalf("ScanMetricsRecords: %d records and %d damaged lines, want %d and %d", records, damaged, wantRecords, wantDamaged)
		}
	})
}

// checkWithoutClock checks withoutClock on line: it leaves line as it is,
// and of a record as the trainer writes it (compact JSON of a map, keys
// sorted, the clock's fields at the top level only, a time without
// quotes or escapes in it), it cuts exactly the clock's fields.
func checkWithoutClock(t *testing.T, line []byte) {
	t.Helper()
	orig := bytes.Clone(line)
	out := withoutClock(line)
	if !bytes.Equal(line, orig) {
		t.Fatalf("withoutClock changed its line %q to %q", orig, line)
	}
	if len(out) > len(line) {
		t.Fatalf("withoutClock(%q) = %q, longer", line, out)
	}
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil || rec == nil || !trainerShaped(rec, true) {
		return
	}
	written, err := json.Marshal(rec) // (as metricsWriter.write writes it)
	if err != nil {
		return
	}
	for _, k := range clockFields {
		delete(rec, k)
	}
	want, _ := json.Marshal(rec)
	if got := withoutClock(written); !bytes.Equal(got, want) {
		t.Fatalf("withoutClock(%s) = %s, want %s", written, got, want)
	}
}

// trainerShaped reports whether v has only keys of lowercase letters,
// digits and underscores, no clock field but at the top level, and clock
// fields that are numbers or strings without a quote or backslash.
func trainerShaped(v any, top bool) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
				return false
			}
			clock := k == "time" || k == "samples_per_s"
			if clock && !top {
				return false
			}
			if clock {
				switch e := e.(type) {
				case float64:
				case string:
					if strings.ContainsAny(e, "\"\\<>&") || !utf8.ValidString(e) || strings.ContainsFunc(e, func(r rune) bool { return r < 0x20 || r == 0x2028 || r == 0x2029 || r == utf8.RuneError }) {
						return false
					}
				default:
					return false
				}
			}
			if !trainerShaped(e, false) {
				return false
			}
		}
	case []any:
		for _, e := range v {
			if !trainerShaped(e, false) {
				return false
			}
		}
	}
	return true
}
