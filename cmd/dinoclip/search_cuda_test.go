//go:build cuda

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// --device cuda answers exactly what the CPU answers (the GPU's float16
// ranking is refined to the exact one), on the emulator or a GPU.
func TestSearchOnGPU(t *testing.T) {
	run, data, _ := trainRun(t)
	dir := t.TempDir()
	index := filepath.Join(dir, "ix")
	mustRun(t, "index", "--model", run, "--features", data, "--out", index)
	wd := newWorld(7)
	_, q := wd.sample(13)
	qPath := filepath.Join(dir, "q.npy")
	writeF32(t, qPath, []int{13, tOut}, q)
	cpu, gpu := filepath.Join(dir, "cpu"), filepath.Join(dir, "gpu")
	mustRun(t, "search", "--index", index, "--queries", qPath, "--k", "9", "--out", cpu)
	mustRun(t, "search", "--index", index, "--queries", qPath, "--k", "9", "--out", gpu, "--device", "cuda")
	ci, cs, _ := readSearch(t, cpu)
	gi, gs, _ := readSearch(t, gpu)
	if !slices.Equal(ci, gi) || !slices.Equal(cs, gs) {
		t.Fatalf("GPU ids %v\nCPU ids %v", gi, ci)
	}
	// The index fits in GPU memory: copied there once, the time of the
	// copy a part of the search's.
	for dir, resident := range map[string]*bool{cpu: nil, gpu: new(true)} {
		var info searchInfo
		raw, err := os.ReadFile(filepath.Join(dir, searchInfoFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			t.Fatal(err)
		}
		if (info.KeysResident == nil) != (resident == nil) || resident != nil && *info.KeysResident != *resident ||
			info.UploadSeconds < 0 || info.UploadSeconds > info.Seconds || (resident != nil) != (info.UploadSeconds > 0) {
			t.Errorf("%s: keys_resident %v, upload_seconds %v of %v s; want resident %v and a copy time within the search's", dir, info.KeysResident, info.UploadSeconds, info.Seconds, resident)
		}
	}
	wantError(t, []string{"search", "--index", index, "--queries", qPath, "--k", "49", "--out", gpu, "--device", "cuda"}, "at most 48")
}

// eval --device cuda projects on the GPU engine and ranks with the GPU's
// exact search (cuda.Device.TopK); CLIP's own recall, ranked on the CPU
// from the same file, must equal the CPU run's.
func TestEvalOnGPU(t *testing.T) {
	run, _, eval := trainRun(t)
	var docs [2]evalDocument
	for i, device := range []string{"cpu", "cuda"} {
		out := mustRun(t, "eval", "--model", run, "--eval", eval, "--json", "--device", device)
		if err := json.Unmarshal([]byte(out), &docs[i]); err != nil {
			t.Fatalf("eval --device %s --json: %v\n%s", device, err, out)
		}
	}
	if docs[1].Device != "cuda" || len(docs[1].Reports) != 1 {
		t.Fatalf("eval --device cuda: %+v", docs[1])
	}
	// trainRun's model has a head 4 wide, which the bf16 engine cannot run:
	// the GPU's default precision gives way to fp32, with a warning; asked
	// for explicitly, bf16 is refused.
	if docs[1].Precision != "fp32" {
		t.Errorf("eval --device cuda on a model the bf16 engine cannot run: precision %q, want fp32", docs[1].Precision)
	}
	// (The warning gives no advice to use fp32: it does.)
	if _, errOut, err := runCLI(t, "eval", "--model", run, "--eval", eval, "--device", "cuda"); err != nil || !strings.Contains(errOut, "computing in fp32, not the GPU's default bf16") ||
		strings.Contains(errOut, "use --precision fp32") {
		t.Errorf("eval --device cuda: error %v, stderr %q: want the fp32 fallback's warning", err, errOut)
	}
	wantError(t, []string{"eval", "--model", run, "--eval", eval, "--device", "cuda", "--precision", "bf16"}, "not a multiple of 8", "--precision fp32")
	if !reflect.DeepEqual(docs[0].Reports[0].CLIP, docs[1].Reports[0].CLIP) {
		t.Errorf("CLIP's recall: cpu %+v, cuda %+v", docs[0].Reports[0].CLIP, docs[1].Reports[0].CLIP)
	}
	for _, r := range docs[1].Reports[0].Projected.Recall {
		if r.TextToImagePercent < 0 || r.TextToImagePercent > 100 || r.ImageToTextPercent < 0 || r.ImageToTextPercent > 100 {
			t.Errorf("projected recall out of range: %+v", r)
		}
	}
}
