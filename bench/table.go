package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/dinoclip/dinoclip/internal/printable"
)

// WriteTable writes r as plain-text tables.
func (r *Report) WriteTable(w io.Writer) error {
	p := &printer{w: w}
	e := r.Env
	commit := e.Commit
	if commit == "" {
		commit = "unknown"
	} else if len(commit) > 12 {
		commit = commit[:12]
	}
	if e.Dirty != nil && *e.Dirty {
		commit += " + uncommitted changes"
	}
	p.line("dinoclip bench: device %s (%s), %s, commit %s, %s", e.Device, e.DeviceName, e.GoVersion, commit, e.Date)
	if len(e.LoadAvgStart) == 3 {
		p.line("load average at start %.2f %.2f %.2f, at end %s (other work on the machine skews timings)",
			e.LoadAvgStart[0], e.LoadAvgStart[1], e.LoadAvgStart[2], loadString(e.LoadAvgEnd))
	}
	if e.Peak.TFLOPs > 0 {
		p.line("peak: %s (%s; %s)", flops(e.Device, e.Peak.TFLOPs), e.Peak.Precision, e.Peak.Source)
	} else {
		p.line("peak: %s", e.Peak.Source)
	}
	unit := flopsUnit(e.Device)

	if len(r.Train) > 0 {
		p.line("")
		p.line("Training step: forward + unit-norm MSE + backward + AdamW (OneCycleLR); data: resident on the device")
		p.line("(float16, batches gathered there, as dinoclip train on a GPU) or host (each batch in host memory)")
		t := p.table("config\tparams\tbatch\tdata\tsteps\tms/step\tmin ms\tmax ms\tsamples/s\t" + unit + "\tof peak\tpeak memory")
		for _, x := range r.Train {
			t.row("%s\t%.1fM\t%d\t%s\t%d\t%.4g\t%.4g\t%.4g\t%.4g\t%s\t%s\t%s",
				x.ConfigName, float64(x.Params)/1e6, x.Batch, x.Data, x.Steps,
				1e3*x.StepSeconds.Median, 1e3*x.StepSeconds.Min, 1e3*x.StepSeconds.Max,
				x.SamplesPerSecond, flopsNum(e.Device, x.TFLOPs), ofPeak(x.FractionOfPeak), memString(x.PeakMemory))
		}
		t.flush()
		for _, x := range r.Train {
			if x.DataNote != "" {
				p.line("note: %s batch %d on host batches: %s", x.ConfigName, x.Batch, x.DataNote)
			}
		}
	}
	if rp := r.Recipe; rp != nil {
		p.line("")
		p.line("Original recipe (%d pairs x %d epochs, batch %d, data in memory): %.0f steps, %s (%.4g samples/s)",
			rp.Pairs, rp.Epochs, rp.Batch, rp.Steps, FormatDuration(rp.Seconds), rp.SamplesPerSecond)
		p.line("  %s", rp.Note)
	}

	k := r.Kernels
	p.line("")
	switch k.Status {
	case Measured:
		p.line("Kernels of one training step: %s, batch %d (%s)", k.ConfigName, k.Batch, k.Source)
		if k.CopyBytesPerSecond > 0 {
			p.line("  memory-bound kernels against the measured copy bandwidth, %.4g GB/s", k.CopyBytesPerSecond/1e9)
		}
		t := p.table("kernel\tshape\tcalls/step\tms/call\tms/step\t" + unit + "\tof peak\tGB/s\tof copy")
		for _, x := range k.Kernels {
			fl, gb := "", ""
			if x.TFLOPs > 0 {
				fl = flopsNum(e.Device, x.TFLOPs)
			}
			if x.Kind == "memory" && x.BytesPerSecond > 0 {
				gb = fmt.Sprintf("%.4g", x.BytesPerSecond/1e9)
			}
			fracPeak := ""
			if x.Kind == "gemm" {
				fracPeak = ofPeak(x.FractionOfPeak)
			}
			ofCopy := ""
			if x.Kind == "memory" {
				ofCopy = percent(x.FractionOfCopy)
			}
			t.row("%s\t%s\t%g\t%.4g\t%.4g\t%s\t%s\t%s\t%s", x.Name, x.Shape, x.CallsPerStep,
				1e3*x.SecondsPerCall, 1e3*x.SecondsPerCall*x.CallsPerStep, fl, fracPeak, gb, ofCopy)
		}
		t.flush()
		if k.StepSeconds > 0 {
			p.line("  accounted %.4g ms of the measured %.4g ms step (%.0f%%); the rest: bias and residual adds, batch copies, allocation, and kernels timed apart running at other speeds than inside a step",
				1e3*k.AccountedSeconds, 1e3*k.StepSeconds, 100*k.AccountedSeconds/k.StepSeconds)
		} else {
			p.line("  accounted %.4g ms per step", 1e3*k.AccountedSeconds)
		}
	default:
		p.line("Kernels: %s (%s)", k.Status, k.Reason)
	}
	if c := r.Copy; c.Status == Measured {
		p.line("Copy bandwidth: %.4g GB/s (bytes read + written; %.0f MiB buffer; %s)", c.BytesPerSecond/1e9, float64(c.Bytes)/(1<<20), c.Source)
	} else {
		p.line("Copy bandwidth: %s (%s)", c.Status, c.Reason)
	}

	p.line("")
	if r.TopK.Status == Measured {
		p.line("Retrieval top-k (random unit vectors)")
		t := p.table("direction\timpl\tqueries\tkeys\tdim\tk\tms\tqueries/s\t" + unit)
		for _, x := range r.TopK.Results {
			t.row("%s\t%s\t%d\t%d\t%d\t%d\t%.4g\t%.4g\t%s", x.Direction, x.Impl, x.Queries, x.Keys, x.Dim, x.K,
				1e3*x.Seconds.Median, x.QueriesPerSecond, flopsNum(e.Device, x.TFLOPs))
		}
		t.flush()
	} else {
		p.line("Retrieval top-k: %s (%s)", r.TopK.Status, r.TopK.Reason)
	}

	p.line("")
	if r.Data.Status == Measured {
		p.line("Data loader: train.Dataset.ReadRows over an epoch of train.Order batches, from .npy shards on disk")
		t := p.table("cache\tdtype\trows\tbatch\tbatches\ts\trows/s\tfile MB/s\tnote")
		for _, x := range r.Data.Results {
			t.row("%s\t%s\t%d\t%d\t%d\t%.4g\t%.4g\t%.4g\t%s", x.Cache, x.DType, x.Rows, x.Batch, x.Batches,
				x.Seconds, x.RowsPerSecond, x.FileBytesPerSecond/1e6, x.ColdError)
		}
		t.flush()
		if len(r.Data.Results) > 0 {
			p.line("  in %s", r.Data.Results[0].Dir)
		}
	} else {
		p.line("Data loader: %s (%s)", r.Data.Status, r.Data.Reason)
	}

	for _, n := range r.Notes {
		p.line("note: %s", n)
	}
	if len(r.Unmeasured) > 0 {
		p.line("")
		p.line("Unmeasured in this run:")
		for _, u := range r.Unmeasured {
			p.line("  - %s", u)
		}
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

// line writes a line of the report, with what a terminal would act on in
// the paths and errors it quotes (an ESC, a newline) written as escapes
// (printable.String).
func (p *printer) line(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintln(p.w, printable.String(fmt.Sprintf(format, args...)))
	}
}

type table struct {
	p  *printer
	tw *tabwriter.Writer
}

func (p *printer) table(header string) *table {
	t := &table{p: p, tw: tabwriter.NewWriter(p.w, 0, 0, 2, ' ', tabwriter.AlignRight)}
	t.row("%s", header)
	return t
}

// row writes a row of the table, its cells separated by tabs, escaped as
// line's.
func (t *table) row(format string, args ...any) {
	if t.p.err == nil {
		_, t.p.err = fmt.Fprint(t.tw, printable.String(fmt.Sprintf(format, args...))+"\t\n")
	}
}

func (t *table) flush() {
	if err := t.tw.Flush(); t.p.err == nil {
		t.p.err = err
	}
}

// flopsUnit is GFLOP/s on the CPU and TFLOP/s elsewhere.
func flopsUnit(device string) string {
	if device == "cpu" {
		return "GFLOP/s"
	}
	return "TFLOP/s"
}

func flopsNum(device string, tflops float64) string {
	if device == "cpu" {
		return fmt.Sprintf("%.4g", tflops*1e3)
	}
	return fmt.Sprintf("%.4g", tflops)
}

func flops(device string, tflops float64) string {
	return flopsNum(device, tflops) + " " + flopsUnit(device)
}

func percent(f float64) string {
	if f <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

// ofPeak is a fraction of the peak as a percentage, or ">100%" for one
// above it: no rate passes the peak, so that peak is wrong (PeakWarning
// says so), and its percentages (7e296% of a --peak-tflops 1e-300) broke
// the table's columns. The JSON keeps the fraction as measured.
func ofPeak(f float64) string {
	if f > 1 {
		return ">100%"
	}
	return percent(f)
}

// PeakWarning is "", or when a rate measured (a training step's, or a
// GEMM kernel's) is above the peak its fraction is of, what is wrong
// with that peak: most likely a --peak-tflops in another unit than
// TFLOP/s.
func (r *Report) PeakWarning() string {
	fastest := 0.0
	for _, x := range r.Train {
		if x.FractionOfPeak > 1 {
			fastest = max(fastest, x.TFLOPs)
		}
	}
	for _, x := range r.Kernels.Kernels {
		if x.Kind == "gemm" && x.FractionOfPeak > 1 {
			fastest = max(fastest, x.TFLOPs)
		}
	}
	if fastest == 0 {
		return ""
	}
	e := r.Env
	measured := flops(e.Device, fastest)
	if e.Peak.Source == PeakFlagSource {
		return fmt.Sprintf("measured %s, more than the --peak-tflops %v (%s): it is likely in the wrong unit, as the flag takes TFLOP/s (989 for an H100's dense BF16); the table shows the fractions of peak above 100%% as >100%%",
			measured, e.Peak.TFLOPs, flops(e.Device, e.Peak.TFLOPs))
	}
	return fmt.Sprintf("measured %s, more than the peak of %s (%s): that peak is likely wrong: give the device's with --peak-tflops, in TFLOP/s; the table shows the fractions of peak above 100%% as >100%%",
		measured, flops(e.Device, e.Peak.TFLOPs), e.Peak.Source)
}

func memString(m Memory) string {
	if m.Status != Measured {
		return "unmeasured"
	}
	return fmt.Sprintf("%.2f GiB", float64(m.Bytes)/(1<<30))
}

func loadString(l []float64) string {
	if len(l) != 3 {
		return "unknown"
	}
	return strings.TrimSpace(fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2]))
}
