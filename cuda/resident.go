//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math"

	"github.com/dinoclip/dinoclip/nn"
)

// The training data resident on the GPU (nn.ResidentEngine): the whole
// data set as float16 in one allocation beside the state and the
// workspace, and each step a gather of its rows into the batch buffers, so
// a step uploads n row indices instead of n rows of float32.

// residentChunkBytes is how much float16 data LoadResident reads and
// uploads at a time: the host holds one chunk, whatever the data set's
// size. A variable so that the tests can cut the data into many chunks.
var residentChunkBytes int64 = 64 << 20

// residentSpare is the device memory LoadResident leaves free beside the
// data: for the driver's own allocations, the buffers of a GPU top-k in
// evaluation and fragmentation. 1/32 of the GPU (2.5 GiB on an 80 GiB
// card), at least 256 MiB.
func residentSpare(total int64) int64 { return max(total/32, 256<<20) }

var _ nn.ResidentEngine = (*Engine)(nil)

// LoadResident implements nn.ResidentEngine. It reserves the workspace for
// batch rows first, then checks that the float16 data (2 bytes a value,
// rows x (InputDim + OutputDim) values) fits in what is left with some
// spare (residentSpare); if not, or if the allocation fails for lack of
// memory, the error wraps nn.ErrNotResident. The data goes up in chunks of
// about residentChunkBytes, read by read on the calling goroutine.
func (e *Engine) LoadResident(rows, batch int, read nn.Float16Reader) error {
	c, d := e.cfg, e.dev
	in, out := c.InputDim, c.OutputDim
	if rows < 1 || rows > math.MaxInt32 {
		return fmt.Errorf("resident data: %d rows, need 1 to %d (row indices are int32)", rows, math.MaxInt32)
	}
	if batch < 1 {
		return fmt.Errorf("resident data: batch of %d rows", batch)
	}
	layout := func(a *arena) (x, t buf[uint16]) {
		return carve[uint16](a, rows*in), carve[uint16](a, rows*out)
	}
	var a arena
	layout(&a)
	bytes := a.off
	err := d.do(func() error {
		if err := e.dropResident(); err != nil {
			return err
		}
		if err := e.reserve(batch); err != nil {
			if d.drv.IsKernelFault(err) {
				return err // (an earlier kernel's, surfacing here: no reason to fall back)
			}
			// Training at this batch size will not fit either; falling
			// back lets that error come from the step, as without
			// residency.
			return fmt.Errorf("%w: %w", nn.ErrNotResident, err)
		}
		free, total, err := d.drv.MemInfo()
		if err != nil {
			return fmt.Errorf("cuda: querying free memory: %w", err)
		}
		spare := residentSpare(total)
		if bytes+spare > free {
			return fmt.Errorf("%w: it takes %.2f GiB as float16 (%d rows of %d + %d values), and the GPU has %.2f GiB free of %.2f GiB beside the model and the workspace for batch %d, of which %.2f GiB are kept spare",
				nn.ErrNotResident, float64(bytes)/gib, rows, in, out, float64(free)/gib, float64(total)/gib, batch, float64(spare)/gib)
		}
		p, err := d.alloc(bytes)
		if err != nil {
			oom := d.oom(err, bytes, fmt.Sprintf("the training data (%d rows)", rows), "the resident float16 copy", "")
			if d.drv.IsOutOfMemory(err) {
				return fmt.Errorf("%w: %w", nn.ErrNotResident, oom)
			}
			return oom
		}
		e.resident, e.residentByteSize = p, bytes
		return nil
	})
	if err != nil {
		return err
	}
	xs, ts := layout(&arena{base: e.resident})
	fail := func(err error) error {
		return errors.Join(err, d.do(e.dropResident))
	}
	chunk := min(rows, max(1, int(residentChunkBytes/int64(2*(in+out)))))
	hx, ht := make([]uint16, chunk*in), make([]uint16, chunk*out)
	for lo := 0; lo < rows; lo += chunk {
		hi := min(lo+chunk, rows)
		k := hi - lo
		if err := read(lo, hi, hx[:k*in], ht[:k*out]); err != nil {
			return fail(err)
		}
		// upload returns once the driver has taken the host memory (see
		// cuda/driver's ToDevice), so the next read may overwrite it.
		err := d.do(func() error {
			if err := upload(d, xs.at(lo*in, k*in), hx[:k*in]); err != nil {
				return err
			}
			return upload(d, ts.at(lo*out, k*out), ht[:k*out])
		})
		if err != nil {
			return fail(err)
		}
	}
	if err := d.do(d.sync); err != nil {
		return fail(err)
	}
	e.residentX, e.residentT, e.residentRows = xs, ts, rows
	return nil
}

// dropResident frees the resident data, if any (on the worker thread).
func (e *Engine) dropResident() error {
	p := e.resident
	e.resident, e.residentByteSize, e.residentRows = 0, 0, 0
	e.residentX, e.residentT = buf[uint16]{}, buf[uint16]{}
	if err := e.dev.free(p); err != nil {
		return fmt.Errorf("cuda: freeing the resident training data: %w", err)
	}
	return nil
}

// ForwardBackwardRows implements nn.ResidentEngine: it uploads the row
// indices, gathers the rows into the batch buffers (gather_rows_f16,
// float16 to float32 exactly) and runs ForwardBackward's forward, loss and
// backward on them.
func (e *Engine) ForwardBackwardRows(rows []int32) (float64, error) {
	if err := e.checkRows(rows); err != nil {
		return 0, err
	}
	n, d := len(rows), e.dev
	var loss float64
	err := d.do(func() error {
		if err := e.reserve(n); err != nil {
			return err
		}
		if err := upload(d, e.rowIdx, rows); err != nil {
			return err
		}
		if err := e.gatherBatch(n); err != nil {
			return err
		}
		var err error
		if loss, err = e.batchLoss(n, true); err != nil {
			return err
		}
		if err := e.backward(n); err != nil {
			return err
		}
		return d.sync()
	})
	if err != nil {
		return 0, err
	}
	e.ready = true
	return loss, nil
}

// checkRows validates a batch of resident rows.
func (e *Engine) checkRows(rows []int32) error {
	if e.residentRows == 0 {
		return errors.New("resident batch: no training data is resident (call LoadResident first)")
	}
	if len(rows) < 1 {
		return errors.New("resident batch: batch of 0 rows")
	}
	for i, r := range rows {
		if r < 0 || int(r) >= e.residentRows {
			return fmt.Errorf("resident batch: entry %d is row %d, out of range [0, %d)", i, r, e.residentRows)
		}
	}
	return nil
}

// gatherBatch gathers the n resident rows listed in e.rowIdx into the
// batch buffers e.x and e.t (on the worker thread).
func (e *Engine) gatherBatch(n int) error {
	c, d := e.cfg, e.dev
	if err := d.gatherRows(e.x, e.residentX, e.rowIdx, n, c.InputDim, e.residentRows); err != nil {
		return err
	}
	return d.gatherRows(e.t, e.residentT, e.rowIdx, n, c.OutputDim, e.residentRows)
}
