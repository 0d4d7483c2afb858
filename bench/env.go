package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dinoclip/dinoclip/internal/buildinfo"
)

// Env is where a benchmark ran.
type Env struct {
	// Device is the --device the engine ran on: "cpu" or "cuda".
	Device string `json:"device"`
	// DeviceName is the processor or GPU, e.g. "Intel(R) Xeon(R) Processor
	// x 2 threads" or "NVIDIA H100 80GB HBM3".
	DeviceName string `json:"device_name"`
	// Engine is the engine's description where it has one (the GPU
	// engine's names the GPU, the kernels it loaded and any GEMM
	// fallback), else its Go type.
	Engine string `json:"engine,omitempty"`

	CPUModel   string `json:"cpu_model"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`

	// Date is when the run started, RFC 3339 in UTC.
	Date string `json:"date"`
	// Commit and whether the working tree had uncommitted changes (nil:
	// unknown); CommitSource says where they came from ("ldflags",
	// "buildinfo", "git" or "" when unknown).
	Commit       string `json:"commit"`
	Dirty        *bool  `json:"dirty,omitempty"`
	CommitSource string `json:"commit_source,omitempty"`

	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute figures when the run
	// started and ended: other work on the machine skews timings.
	LoadAvgStart []float64 `json:"loadavg_start,omitempty"`
	LoadAvgEnd   []float64 `json:"loadavg_end,omitempty"`

	// Peak is the compute peak that fractions of peak refer to.
	Peak Peak `json:"peak"`
}

// Peak is a device's compute peak and where the figure comes from.
type Peak struct {
	TFLOPs    float64 `json:"tflops,omitempty"`
	Precision string  `json:"precision,omitempty"`
	Source    string  `json:"source"`
}

// NewEnv describes this machine for a run on device, starting now.
func NewEnv(device string) Env {
	e := Env{
		Device:     device,
		CPUModel:   cpuModel(),
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Date:       time.Now().UTC().Format(time.RFC3339),
	}
	e.DeviceName = fmt.Sprintf("%s x %d threads", e.CPUModel, e.GOMAXPROCS)
	e.Commit, e.Dirty, e.CommitSource = commit()
	e.LoadAvgStart = LoadAvg()
	return e
}

// cpuModel is the first "model name" of /proc/cpuinfo, or the
// architecture where there is none.
func cpuModel() string {
	if v := cpuinfoField("model name"); v != "" {
		return v
	}
	return runtime.GOARCH
}

// cpuinfoField is the value of the first line of /proc/cpuinfo whose key is
// key, or "".
func cpuinfoField(key string) string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// LoadAvg reads /proc/loadavg's three load averages; nil where there is
// none.
func LoadAvg() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(b))
	if len(fields) < 3 {
		return nil
	}
	out := make([]float64, 3)
	for i := range out {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return nil
		}
		out[i] = v
	}
	return out
}

// commit finds the commit: the build's (see buildinfo.Revision), else git in
// the working directory.
func commit() (string, *bool, string) {
	if rev, dirty, source := buildinfo.Revision(); rev != "" {
		return rev, dirty, source
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "", nil, ""
	}
	rev := strings.TrimSpace(string(out))
	var dirty *bool
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		d := len(strings.TrimSpace(string(st))) > 0
		dirty = &d
	}
	return rev, dirty, "git"
}

// GPUPeaks are dense peaks from NVIDIA's datasheets, by a substring of the
// device name: 989 TFLOP/s dense BF16 for the H100 SXM
// (https://www.nvidia.com/en-us/data-center/h100/), and the same for the
// H200, which has the H100's compute with more and faster memory
// (https://www.nvidia.com/en-us/data-center/h200/).
var GPUPeaks = []struct {
	Match string
	Peak  Peak
}{
	{"H100", Peak{TFLOPs: 989, Precision: "bf16 dense", Source: "NVIDIA datasheet, H100 SXM"}},
	{"H200", Peak{TFLOPs: 989, Precision: "bf16 dense", Source: "NVIDIA datasheet, H200 = H100 compute"}},
}

// DefaultPeak is the peak a run reports fractions of when none is given:
// for a GPU the datasheet's dense BF16 peak of a known device; for the CPU
// a nominal figure from /proc/cpuinfo (threads x clock x FP32 flops per
// cycle of the widest vector FMA the flags list, assuming two FMA units
// per core), which is an estimate and says so.
func DefaultPeak(device, deviceName string, threads int) Peak {
	if device != "cpu" {
		for _, p := range GPUPeaks {
			if strings.Contains(deviceName, p.Match) {
				return p.Peak
			}
		}
		return Peak{Source: fmt.Sprintf("unknown for %q: pass --peak-tflops", deviceName)}
	}
	mhz, _ := strconv.ParseFloat(cpuinfoField("cpu MHz"), 64)
	flags := " " + cpuinfoField("flags") + " "
	var perCycle float64
	var isa string
	switch {
	case strings.Contains(flags, " avx512f "):
		perCycle, isa = 64, "AVX-512"
	case strings.Contains(flags, " avx2 ") && strings.Contains(flags, " fma "):
		perCycle, isa = 32, "AVX2+FMA"
	case strings.Contains(flags, " avx "):
		perCycle, isa = 16, "AVX"
	}
	if mhz <= 0 || perCycle == 0 {
		return Peak{Source: "unknown for this CPU: pass --peak-tflops"}
	}
	return Peak{
		TFLOPs:    float64(threads) * mhz * 1e6 * perCycle / 1e12,
		Precision: "fp32",
		Source: fmt.Sprintf("nominal estimate: %d threads x %.0f MHz x %.0f flop/cycle (%s, 2 FMA units assumed; threads may be hyperthreads of fewer cores)",
			threads, mhz, perCycle, isa),
	}
}
