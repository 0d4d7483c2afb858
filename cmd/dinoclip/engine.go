package main

import (
	"fmt"
	"strings"

	"github.com/dinoclip/dinoclip/checkpoint"
	"github.com/dinoclip/dinoclip/internal/sysmem"
	"github.com/dinoclip/dinoclip/nn"
	"github.com/urfave/cli/v2"
)

// devices are the values of --device.
var devices = []string{"cpu", "cuda"}

// checkDevice validates --device.
func checkDevice(device string) error {
	for _, d := range devices {
		if device == d {
			return nil
		}
	}
	return fmt.Errorf("--device %q: unknown device, want %s", device, strings.Join(devices, " or "))
}

// projectionFlags reads what every command that runs a model over
// features takes (project, index): no positional arguments, the required
// flags, --batch (at least 1) and --device.
func projectionFlags(cCtx *cli.Context, required ...string) (batch int, device string, err error) {
	if err := noArgs(cCtx); err != nil {
		return 0, "", err
	}
	if err := requireFlags(cCtx, required...); err != nil {
		return 0, "", err
	}
	batch = cCtx.Int("batch")
	if err := checkAtLeast("batch", batch, 1); err != nil {
		return 0, "", err
	}
	device = cCtx.String("device")
	if err := checkDevice(device); err != nil {
		return 0, "", err
	}
	return batch, device, nil
}

// openEngine builds an engine of shape c on device: the float32 CPU engine
// for cpu, newEngine (device.go, by build tag) for the others.
func openEngine(device string, c nn.Config) (nn.Engine, error) {
	if err := checkDevice(device); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if device == "cpu" {
		return nn.NewCPUEngine[float32](c)
	}
	e, err := newEngine(device, c)
	if err != nil {
		return nil, fmt.Errorf("--device %s: %w", device, err)
	}
	return e, nil
}

// loadedModel is a model file read and put on an engine.
type loadedModel struct {
	Path   string // the model file that --model resolved to
	Model  *checkpoint.Model
	Engine nn.Engine
}

// loadModel resolves --model (a model file, a checkpoint directory or a run
// directory), reads it and loads it onto an engine on device.
func loadModel(model, device string) (*loadedModel, error) {
	if err := checkDevice(device); err != nil {
		return nil, err
	}
	path, err := checkpoint.Resolve(model)
	if err != nil {
		return nil, err
	}
	m, err := checkpoint.ReadModel(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	e, err := openEngine(device, m.Config)
	if err != nil {
		return nil, err
	}
	if err := e.SetParameters(m.Params); err != nil {
		e.Close()
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return &loadedModel{Path: path, Model: m, Engine: e}, nil
}

// checkCPUMemory refuses a CPU run that would not fit in the memory this
// machine has left, before anything is allocated: the kernel would
// otherwise kill the process partway, with no message.
func checkCPUMemory(c nn.Config, batch, elemSize int) error {
	need := c.CPUEngineBytes(batch, elemSize)
	avail, ok := sysmem.Available()
	if !ok || need <= float64(avail) {
		return nil
	}
	return fmt.Errorf("the model (%s) needs about %.1f GiB on the CPU at --batch %d (parameters, gradients, AdamW moments and activations), but this machine has %.1f GiB available: use a smaller --hidden-dim, --blocks or --batch",
		c.Describe(), need/(1<<30), batch, float64(avail)/(1<<30))
}
