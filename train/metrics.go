package train

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/retrieval"
)

// MetricsFile is the run directory's JSON-lines log of training and
// evaluation records.
const MetricsFile = "metrics.jsonl"

// MaxMetricsLine is the longest line of the metrics file that a resume
// (or info, or eval looking up a recorded evaluation) reads back;
// training writes far shorter ones.
const MaxMetricsLine = 64 << 20

// ScanMetrics calls fn with each line (its newline and a carriage return
// before it cut) of the metrics file read from r, which is at path, in
// turn, and stops at the first error fn returns, which it returns. A line
// longer than MaxMetricsLine is none training writes: the scan stops there
// with an error saying so, never with a count of what came before passed
// off as the whole file; a read error is the system's, with path.
func ScanMetrics(r io.Reader, path string, fn func(line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, MaxMetricsLine)
	for sc.Scan() {
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return fmt.Errorf("%s: %w (a line longer than %d MiB): this is not the log training writes", path, err, MaxMetricsLine>>20)
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ScanMetricsFile is ScanMetrics of the metrics file at path, opened as
// atomicfile.OpenToRead opens it (a named pipe there is refused, not
// waited on).
func ScanMetricsFile(path string, fn func(line []byte) error) error {
	f, err := atomicfile.OpenToRead(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return ScanMetrics(f, path, fn)
}

// recordOf reads the type and step of a line of the metrics log; ok is
// false for a line that is no record (not JSON, or without a step), which
// a resume drops.
func recordOf(line []byte) (typ string, step int, ok bool) {
	var rec struct {
		Type string `json:"type"`
		Step *int   `json:"step"`
	}
	if json.Unmarshal(line, &rec) != nil || rec.Step == nil {
		return "", 0, false
	}
	return rec.Type, *rec.Step, true
}

// scanRecords calls fn with each line of the metrics file f, at path,
// from its start (ScanMetrics), with the type and step of its record (ok
// false for a line that is no record), and returns how many lines are no
// record, not counting a torn last line, which a kill leaves, nor blank
// lines, which held none: the lines damaged by hand or by the disk, which
// a resume drops with the records they held.
func scanRecords(f *os.File, path string, fn func(line []byte, typ string, step int, ok bool) error) (damaged int, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	// (Whether the last line scanned ended in a newline is judged at the
	// end of what was read, not at the file's size: a line appended by a
	// run training meanwhile is none of the scan's.)
	r := &countingReader{r: f}
	lastDamaged := false
	err = ScanMetrics(r, path, func(line []byte) error {
		typ, step, ok := recordOf(line)
		if lastDamaged = !ok && len(bytes.TrimSpace(line)) > 0; lastDamaged {
			damaged++
		}
		return fn(line, typ, step, ok)
	})
	if err == nil && lastDamaged && !endsLine(f, r.n) {
		damaged--
	}
	return damaged, err
}

// countingReader is r, counting the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ScanMetricsRecords calls fn with the type and step of each record of
// the metrics file at path, opened as ScanMetricsFile opens it, and
// returns how many of its lines are damaged (scanRecords): those a resume
// drops, with the records they held.
func ScanMetricsRecords(path string, fn func(typ string, step int) error) (damaged int, err error) {
	f, err := atomicfile.OpenToRead(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return scanRecords(f, path, func(_ []byte, typ string, step int, ok bool) error {
		if !ok {
			return nil
		}
		return fn(typ, step)
	})
}

// metricsWriter appends one JSON object per line to the file f at path,
// each in a single write so a crash leaves at most one torn last line
// (dropped on resume).
type metricsWriter struct {
	f       *os.File
	path    string
	records int        // in the file: those a resume kept, and those written since
	digest  *logDigest // of those records
}

// clockFields are the fields of a metrics record that the clock gives
// (trainRecord, evalRecord): a resumed run's differ from those of a run
// never stopped.
var clockFields = []string{"time", "samples_per_s"}

// logDigest is the running SHA-256 of a metrics log's records, each a line
// less its clock fields (withoutClock) and a newline (State.LogSHA256): the
// same for a run resumed as for one never stopped, whose checkpoints hold
// it, bit for bit.
type logDigest struct{ h hash.Hash }

func newLogDigest() *logDigest { return &logDigest{sha256.New()} }

// add adds a record, a line of the log.
func (d *logDigest) add(line []byte) {
	d.h.Write(withoutClock(line))
	d.h.Write([]byte{'\n'})
}

// withoutClock is line, a record as metricsWriter.write writes it (compact
// JSON), less the member of each of clockFields and a comma beside it. It
// works on the text, as the record was written, because parsing and
// writing again took 8 µs a record (11 s to resume a run of a million
// records, against 4 s so): a line written otherwise (spaces added, keys
// reordered) is one edited, which the digest is there to tell.
func withoutClock(line []byte) []byte {
	out := line
	for _, field := range clockFields {
		key := `"` + field + `":`
		i := bytes.Index(out, []byte(key))
		if i < 0 {
			continue
		}
		end := i + len(key)
		if end < len(out) && out[end] == '"' { // a string, without escapes
			k := bytes.IndexByte(out[end+1:], '"')
			if k < 0 {
				continue
			}
			end += k + 2
		} else if k := bytes.IndexAny(out[end:], ",}"); k >= 0 {
			end += k
		} else {
			continue
		}
		if end < len(out) && out[end] == ',' {
			end++
		} else if i > 0 && out[i-1] == ',' {
			i--
		}
		out = append(out[:i:i], out[end:]...) // (a copy: line is the caller's)
	}
	return out
}

// sum is the digest of the records added so far, hex.
func (d *logDigest) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }

// keptOnResume reports whether a metrics record of type typ at step
// recStep stays in the log of a run resumed from step (evalPending: with
// its evaluation to do again): not a later step's, nor that evaluation's.
func keptOnResume(recStep int, typ string, step int, evalPending bool) bool {
	return recStep < step || recStep == step && !(evalPending && typ == "eval")
}

// KeepsRecord reports whether a run resumed from st keeps a metrics record
// of type typ at step in its log (openMetrics drops the others).
func (st State) KeepsRecord(step int, typ string) bool {
	return keptOnResume(step, typ, st.Step, st.PendingEval != nil)
}

// openMetrics opens the metrics file for appending, for a run at st.
// Records past its step (written after the checkpoint a run resumes from)
// and a torn last line are dropped first, and so is an evaluation record
// of the step when that evaluation is pending (the resume does it again;
// an earlier resume that died between writing the record and saving the
// checkpoint left one), so a resumed run's file reads like one never
// stopped. Other lines that are no record (damaged by hand or by the
// disk) are dropped too, with a warning on log: the records they held are
// lost (but where a line still shows a later step's, which the resume
// writes again); a log holding fewer records up to the step than st recorded
// (State.LogRecords: cut, emptied or removed), fewer than those lines
// account for, is warned of too, and so
// are as many records as it recorded but not those (State.LogSHA256:
// edited, or a digit changed by the disk). The file is read a line at
// a time, twice where lines are dropped (a log of gigabytes took twice its
// size in memory), and ctx's end stops the reading.
func openMetrics(ctx context.Context, path string, st State, log *slog.Logger) (*metricsWriter, error) {
	if err := checkRunFile(path); err != nil {
		return nil, err
	}
	old, err := os.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	records, dropped, digest := 0, 0, newLogDigest()
	if err == nil {
		defer old.Close()
		if records, dropped, digest, err = keepMetrics(ctx, old, path, st.Step, st.PendingEval != nil, log); err != nil {
			return nil, err
		}
	}
	switch {
	case records+dropped < st.LogRecords:
		log.Warn("the metrics log holds fewer records up to the checkpoint resumed from than it held when the checkpoint was saved (cut, emptied or removed by hand or by the disk): the records lost are not written again",
			"file", path, "records", records, "recorded", st.LogRecords)
	case records < st.LogRecords:
		// (The lines keepMetrics dropped, with a warning, held the records
		// missing: a second warning would count the same loss again.)
	case st.LogSHA256 != "" && digest.sum() != st.LogSHA256:
		log.Warn("the metrics log's records up to the checkpoint resumed from are not those it held when the checkpoint was saved (edited by hand, or damaged by the disk; the clock's fields aside): they are kept as they are",
			"file", path, "records", records)
	}
	f, err := openRunFile(path, os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return nil, err
	}
	return &metricsWriter{f: f, path: path, records: records, digest: digest}, nil
}

// keepMetrics rewrites the metrics file old, open at path, with the lines
// openMetrics keeps, where it keeps fewer than the file holds (or the file
// has other names), and returns how many it keeps, how many of the lines
// it dropped with a warning that their records are lost held records it
// would have kept, and the digest of those kept. Those are the lines that
// are no record but name a step it keeps (tornStep, keptStep): a line
// that names none may have held no record (a note written in by hand) or
// one of a step past the checkpoint, and counted, would hide a record
// lost up to it.
func keepMetrics(ctx context.Context, old *os.File, path string, step int, evalPending bool, log *slog.Logger) (records, dropped int, digest *logDigest, err error) {
	st, err := old.Stat()
	if err != nil {
		return 0, 0, nil, err
	}
	var kept int64 // bytes
	// damaged counts the lines that are no record (but a torn last one);
	// later, those of them that begin as a record of a step past the one
	// resumed from (or its pending evaluation), which the resume writes
	// again: their records are not lost.
	damaged, later := 0, 0
	lastLater := false      // the last line read is one later counts
	var lastNoRecord []byte // the last line read, when it is no record
	// scan passes each kept line to emit, from the file's start.
	scan := func(emit func(line []byte) error) (err error) {
		kept, records, dropped, later, digest = 0, 0, 0, 0, newLogDigest()
		// ctx is looked at every 4096 lines, or 16 MiB of them, whichever
		// comes first (a log of long lines was a minute between looks).
		lines, sinceLook := 0, 0
		damaged, err = scanRecords(old, path, func(line []byte, typ string, recStep int, ok bool) error {
			if lines, sinceLook = lines+1, sinceLook+len(line); lines%4096 == 0 || sinceLook > 16<<20 {
				if sinceLook = 0; ctx.Err() != nil {
					return ctx.Err()
				}
			}
			if lastNoRecord, lastLater = nil, false; !ok {
				lastNoRecord = append([]byte(nil), line...)
				_, keeps, rewritten := keptStep(line, step, evalPending)
				if keeps {
					dropped++
				}
				if lastLater = rewritten; lastLater {
					later++
				}
			}
			if !ok || !keptOnResume(recStep, typ, step, evalPending) {
				return nil
			}
			kept += int64(len(line)) + 1
			records++
			digest.add(line)
			return emit(line)
		})
		if errors.Is(err, bufio.ErrTooLong) {
			// (Skipping the rest would drop every later record from the
			// rewritten file.)
			return fmt.Errorf("%w; move it away to resume", err)
		}
		return err
	}
	if err := scan(func([]byte) error { return nil }); err != nil {
		return 0, 0, nil, err
	}
	ended := endsLine(old, st.Size())
	if lastLater && !ended {
		later-- // (the torn last line, which damaged does not count)
	}
	if lost := damaged - later; lost > 0 {
		log.Warn("dropping lines of the metrics log that are no record (damaged by hand or by the disk): the records they held are lost", "file", path, "lines", lost)
	}
	// A torn last line is a record a kill cut off, of a step after the
	// checkpoint resumed from (the log is synced before each checkpoint),
	// or the evaluation of its step when that is pending, which the
	// resume writes again; one of an earlier step was cut by hand or by
	// the disk, and its record is lost.
	if recStep, keeps, _ := keptStep(lastNoRecord, step, evalPending); !ended && keeps {
		log.Warn("dropping the metrics log's cut-off last line, a record of a step the resume does not train again (cut by hand or by the disk: a kill cuts off only a later one): the record is lost", "file", path, "step", recStep)
	}
	// Kept whole: every line, each ending in a newline (a last one
	// without would have the next record appended to it; the sizes alone
	// could match with a line dropped, an empty one, and the newline
	// missing). Appended in place, a file with other names (a backup made
	// with cp -al) would change under them too: rewritten first, it is the
	// run's own.
	if kept == st.Size() && ended && !atomicfile.HardLinked(st) {
		return records, dropped, digest, nil
	}
	err = atomicfile.Write(path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		if err := scan(func(line []byte) error {
			bw.Write(line)
			return bw.WriteByte('\n')
		}); err != nil {
			return err
		}
		return bw.Flush()
	})
	return records, dropped, digest, err
}

// tornStep finds the step of a record in a line cut off before its end,
// or damaged past its step: a line that begins as a record (a note
// written in that quotes a step is none), and tornType its type, where
// that is still there (the keys are written in order, type last).
var (
	tornStep = regexp.MustCompile(`^\s*\{.*?"step":(\d+)[,}]`)
	tornType = regexp.MustCompile(`"type":"(\w+)"`)
)

// keptStep reports the step a line that is no record names (tornStep),
// and whether a resume from step keeps that step's records of its type
// (keptOnResume): the line held a record the resume would have kept, and
// does not write again; rewritten, whether it surely held one the resume
// writes again. A line whose type is gone is taken as the step's
// evaluation for keeps, and as its training record for rewritten, each
// the kind that cannot hide a record lost (the first counts against the
// records missing, the second is not warned of).
func keptStep(line []byte, step int, evalPending bool) (recStep int, keeps, rewritten bool) {
	m := tornStep.FindSubmatch(line)
	if m == nil {
		return 0, false, false
	}
	recStep, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return 0, false, false
	}
	asKept, asRewritten := "eval", "train"
	if t := tornType.FindSubmatch(line[len(m[0]):]); t != nil {
		asKept, asRewritten = string(t[1]), string(t[1])
	}
	return recStep, keptOnResume(recStep, asKept, step, evalPending), !keptOnResume(recStep, asRewritten, step, evalPending)
}

// endsLine reports whether the file f of size bytes ends with a newline
// (an empty one ends no line, and is none torn): a metrics log whose last
// line does not was cut off there by a kill.
func endsLine(f *os.File, size int64) bool {
	if size == 0 {
		return true
	}
	last := make([]byte, 1)
	_, err := f.ReadAt(last, size-1)
	return err == nil && last[0] == '\n'
}

// write appends rec as a line. A write that fails partway (a full disk)
// is cut off again where it began, so the file holds no torn line a
// reader of the log trips on while the run waits for its resume.
func (m *metricsWriter) write(rec map[string]any) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	end, err := m.f.Seek(0, io.SeekEnd) // (where an append begins)
	if err != nil {
		return err
	}
	if _, err = m.f.Write(append(b, '\n')); err != nil {
		// (By path where the handle cannot: Windows opens one for
		// appending without the right to truncate.)
		if m.f.Truncate(end) != nil {
			os.Truncate(m.path, end)
		}
		return err
	}
	m.records++
	m.digest.add(b)
	return nil
}

// sync makes the records written so far durable: before a checkpoint,
// which a resume after a power loss continues from, so that the log holds
// every record up to it (a resume drops later ones, but writes no earlier
// one again).
func (m *metricsWriter) sync() error { return m.f.Sync() }

func (m *metricsWriter) Close() error { return m.f.Close() }

// Metric is how the best checkpoint is chosen.
//
//   - "loss": the epoch's mean training loss, lower is better (the default
//     without evaluation sets);
//   - "r5": the mean of text->image and image->text R@5 of the projection,
//     over all evaluation sets, higher is better (the default with them);
//   - "NAME/t2i@K", "NAME/i2t@K": one set's recall at K (1, 5 or 10) in one
//     direction, higher is better.
type Metric struct {
	Name string
	set  string
	dir  string // "t2i" or "i2t"
	k    int
}

// DefaultMetric is the metric a run with evals evaluation sets picks its
// best by when none is named (Options.BestMetric ""): r5, or the training
// loss without sets.
func DefaultMetric(evals int) string {
	if evals > 0 {
		return "r5"
	}
	return "loss"
}

// ParseMetric reads a metric name against the evaluation sets a run has
// ("": DefaultMetric).
func ParseMetric(name string, evals []*retrieval.Set) (Metric, error) {
	if name == "" {
		name = DefaultMetric(len(evals))
	}
	switch name {
	case "loss":
		return Metric{Name: name}, nil
	case "r5":
		if len(evals) == 0 {
			return Metric{}, fmt.Errorf("best metric %q needs at least one evaluation set", name)
		}
		return Metric{Name: name, k: 5}, nil
	}
	// The set's name is what comes before the last "/" (a name may hold
	// one); the rest is exactly t2i@K or i2t@K.
	i := strings.LastIndex(name, "/")
	set, rest := name[:max(i, 0)], name[i+1:]
	dir, k, _ := strings.Cut(rest, "@")
	m := Metric{Name: name, set: set, dir: dir, k: map[string]int{"1": 1, "5": 5, "10": 10}[k]}
	if i < 0 || (dir != "t2i" && dir != "i2t") || m.k == 0 {
		return Metric{}, fmt.Errorf("best metric %q: want loss, r5, or SET/t2i@K or SET/i2t@K with K 1, 5 or 10", name)
	}
	for _, s := range evals {
		if s.Name == set {
			return m, nil
		}
	}
	names := make([]string, len(evals))
	for i, s := range evals {
		names[i] = strconv.Quote(s.Name)
	}
	if len(names) == 0 {
		return Metric{}, fmt.Errorf("best metric %q: no evaluation set named %q (the run has no evaluation sets: give them with --eval)", name, set)
	}
	return Metric{}, fmt.Errorf("best metric %q: no evaluation set named %q (the run's sets: %s)", name, set, strings.Join(names, ", "))
}

// Better reports whether a improves on b.
func (m Metric) Better(a, b float64) bool {
	if m.Name == "loss" {
		return a < b
	}
	return a > b
}

// Value computes the metric from an epoch's training loss and evaluations.
func (m Metric) Value(loss float64, reports []retrieval.Report) (float64, error) {
	if m.Name == "loss" {
		return loss, nil
	}
	var sum float64
	var n int
	for _, r := range reports {
		if m.set != "" && r.Name != m.set {
			continue
		}
		at, ok := r.Projected.At(m.k)
		if !ok {
			return math.NaN(), fmt.Errorf("evaluation of %s has no recall at %d", r.Name, m.k)
		}
		switch m.dir {
		case "t2i":
			sum += at.TextToImagePercent
			n++
		case "i2t":
			sum += at.ImageToTextPercent
			n++
		default:
			sum += at.TextToImagePercent + at.ImageToTextPercent
			n += 2
		}
	}
	if n == 0 {
		return math.NaN(), fmt.Errorf("best metric %s: no evaluation to compute it from", m.Name)
	}
	return sum / float64(n), nil
}
