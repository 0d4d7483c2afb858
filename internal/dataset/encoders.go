package dataset

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/strictjson"
)

// Encoders names the two pretrained models that vectors come from: the
// DINOv2 model whose image features a projector reads, and the CLIP model
// whose embedding space it maps them into (its training targets, an
// evaluation set's embeddings, a search's text queries). Vectors of
// another model of the same width load without complaint and mean
// nothing against these (ViT-B/16 and ViT-B/32 CLIP are both 512 wide),
// so each file that can records them, and the commands that bring two of
// them together compare the names (Mismatch).
//
// A name is as the Python extractor records it: a Hugging Face model name
// as given, a local directory by its real path. "" is unknown (data
// written by dinoclip synth, a model converted from a .pt file, a file
// from before they were recorded), which matches anything. Names are
// compared, not weights: one model under two names (a local copy of a
// Hugging Face model) looks like two, which is why a mismatch is a
// warning, not a refusal.
type Encoders struct {
	DINOv2 string `json:"dinov2,omitempty"`
	CLIP   string `json:"clip,omitempty"`
}

// ExtractRecordFile is the record the Python extractor keeps beside the
// training shards it writes (its settings, the models among them).
const ExtractRecordFile = "extract.json"

// MaxRecordBytes bounds what is read of an ExtractRecordFile: it records
// every shard's source, a few hundred bytes each.
const MaxRecordBytes = 256 << 20

// Metadata keys of a model file that hold its Encoders: those of the data
// it was trained on.
const (
	DINOv2Key = "dinov2"
	CLIPKey   = "clip"
)

// Known reports whether e names either model.
func (e Encoders) Known() bool { return e.DINOv2 != "" || e.CLIP != "" }

// Or is e with the models it does not name taken from o.
func (e Encoders) Or(o Encoders) Encoders {
	if e.DINOv2 == "" {
		e.DINOv2 = o.DINOv2
	}
	if e.CLIP == "" {
		e.CLIP = o.CLIP
	}
	return e
}

// Agreed is what every one of encs names alike: each model's name where
// all name that one; none where one names another, or none (the weights
// of an average of models trained on two, or on one unknown, are of
// neither).
func Agreed(encs []Encoders) Encoders {
	if len(encs) == 0 {
		return Encoders{}
	}
	agreed := encs[0]
	for _, e := range encs[1:] {
		if e.DINOv2 != agreed.DINOv2 {
			agreed.DINOv2 = ""
		}
		if e.CLIP != agreed.CLIP {
			agreed.CLIP = ""
		}
	}
	return agreed
}

// AddTo records e in a model file's metadata.
func (e Encoders) AddTo(meta map[string]string) {
	if e.DINOv2 != "" {
		meta[DINOv2Key] = e.DINOv2
	}
	if e.CLIP != "" {
		meta[CLIPKey] = e.CLIP
	}
}

// EncodersOf is what a model file's metadata records of its Encoders; a
// name that is none (ValidName: a tampered file) is taken for unknown.
func EncodersOf(meta map[string]string) Encoders {
	valid := func(name string) string {
		if !ValidName(name) {
			return ""
		}
		return name
	}
	return Encoders{DINOv2: valid(meta[DINOv2Key]), CLIP: valid(meta[CLIPKey])}
}

// String describes e for dinoclip info: each name it knows, quoted (a
// name comes from a file, and is shown as Go quotes it so that no
// character in it can rewrite a terminal line).
func (e Encoders) String() string {
	var parts []string
	if e.DINOv2 != "" {
		parts = append(parts, "features of DINOv2 "+strconv.Quote(e.DINOv2))
	}
	if e.CLIP != "" {
		parts = append(parts, "embeddings of CLIP "+strconv.Quote(e.CLIP))
	}
	if parts == nil {
		return "not recorded"
	}
	return strings.Join(parts, " and ")
}

// Conflicts reports whether e and o name different models that both know.
func (e Encoders) Conflicts(o Encoders) bool {
	return differ(e.DINOv2, o.DINOv2) || differ(e.CLIP, o.CLIP)
}

// differ reports whether a and b are two names, both known.
func differ(a, b string) bool { return a != "" && b != "" && a != b }

// Mismatch says where a and b, the encoders of the things called aWhat and
// bWhat, name different models that both know, as a warning's sentence
// ("" when nothing differs).
func Mismatch(aWhat string, a Encoders, bWhat string, b Encoders) string {
	var as, bs []string
	for _, f := range []struct{ model, a, b string }{{"DINOv2", a.DINOv2, b.DINOv2}, {"CLIP", a.CLIP, b.CLIP}} {
		if differ(f.a, f.b) {
			as = append(as, fmt.Sprintf("%s %q", f.model, f.a))
			bs = append(bs, fmt.Sprintf("%s %q", f.model, f.b))
		}
	}
	if as == nil {
		return ""
	}
	return fmt.Sprintf("%s was made with %s, %s with %s: vectors of two models do not compare, so the results mean nothing "+
		"(unless these are one model under two names, such as a local copy of a Hugging Face model)",
		aWhat, strings.Join(as, " and "), bWhat, strings.Join(bs, " and "))
}

// ReadEncoders reads the Encoders recorded in dir's ExtractRecordFile
// (training shards, features for an index); none when dir holds no such
// file. A record that cannot be read is an error, for the caller to warn
// of: the data may still be good.
func ReadEncoders(dir string) (Encoders, error) {
	path := filepath.Join(dir, ExtractRecordFile)
	b, err := atomicfile.ReadRegular(path, MaxRecordBytes)
	if errors.Is(err, os.ErrNotExist) {
		return Encoders{}, nil
	}
	if err != nil {
		return Encoders{}, err
	}
	e, err := ParseEncoders(b)
	if err != nil {
		return Encoders{}, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// ParseEncoders reads the models a JSON record (extract.json, eval.json)
// names under "dinov2" and "clip", spelled so (null for none: features
// extracted with --target none have no CLIP model); its other keys are
// not looked at. A name that is no string, or no plausible name
// (ValidName), is an error.
func ParseEncoders(b []byte) (Encoders, error) {
	e, err := parseEncoders(b)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("the text ends inside its value (a truncated file?)")
	}
	return e, err
}

func parseEncoders(b []byte) (Encoders, error) {
	if !utf8.Valid(b) { // (read as U+FFFD: another name than the file's)
		return Encoders{}, errors.New("not UTF-8 text, as JSON must be")
	}
	// The object's keys as spelled (encoding/json's fields would match
	// "CLIP" too), those two refused when given twice (the last would be
	// taken). Its other keys are not looked at: keys that differ in case
	// only are a record's own (two tars Part.tar and part.tar).
	rec := map[string]json.RawMessage{}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return Encoders{}, errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Encoders{}, strictjson.Describe(err)
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return Encoders{}, strictjson.Describe(err)
		}
		if _, twice := rec[key]; twice && (key == DINOv2Key || key == CLIPKey) {
			return Encoders{}, fmt.Errorf("key %q appears twice", key)
		}
		rec[key] = value
	}
	if _, err := dec.Token(); err != nil { // '}'
		return Encoders{}, strictjson.Describe(err)
	}
	var e Encoders
	for _, f := range []struct {
		key string
		dst *string
	}{{DINOv2Key, &e.DINOv2}, {CLIPKey, &e.CLIP}} {
		raw, ok := rec[f.key]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return Encoders{}, fmt.Errorf("%s: %s, not a string (a model's name)", f.key, jsonKind(raw))
		}
		if err := checkName(f.key, *f.dst); err != nil {
			return Encoders{}, err
		}
	}
	return e, nil
}

// maxNameBytes bounds a model's name: a Hugging Face name or a local path.
// (Each checkpoint's header and every index manifest copies it: one of
// 110 MB stopped a run at its first checkpoint.)
const maxNameBytes = 4096

// ValidName reports whether name can be a model's name as the extractor
// records it: not empty, at most maxNameBytes, and UTF-8 of graphic
// characters (unicode.IsGraphic: printable ones and spaces such as
// U+3000, which a local folder's name may hold; no control or format
// character).
func ValidName(name string) bool {
	return name != "" && len(name) <= maxNameBytes && utf8.ValidString(name) && !strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsGraphic(r) })
}

// checkName refuses a name, recorded under key, that is none (ValidName).
func checkName(key, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%s: %s is no model's name (empty, over %d bytes, or not UTF-8 of graphic characters)", key, shortQuote(name), maxNameBytes)
	}
	return nil
}

// Printable reports whether name is UTF-8 of printable characters only
// (strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the
// ASCII space): nothing in it moves a terminal's cursor or hides text.
func Printable(name string) bool {
	return utf8.ValidString(name) && !strings.ContainsFunc(name, func(r rune) bool { return !strconv.IsPrint(r) })
}

// jsonKind names the kind of the JSON value raw (not a string), with the
// value where it is a number or a boolean, whose characters are all plain.
func jsonKind(raw json.RawMessage) string {
	switch v := string(raw); {
	case strings.HasPrefix(v, "{"):
		return "an object"
	case strings.HasPrefix(v, "["):
		return "an array"
	case v == "true" || v == "false":
		return "the boolean " + v
	case len(v) > 32:
		return "a number"
	default:
		return "the number " + v
	}
}

// shortQuote is s quoted, cut to its first 64 bytes.
func shortQuote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

// QueriesRecordFormat tags the record that the Python extractor's texts
// command writes beside the queries it embeds: FILE.json beside
// FILE.npy (QueriesRecordPath).
const QueriesRecordFormat = "dinoclip-queries/1"

// maxQueriesRecordBytes bounds what is read of a queries record: a few
// settings and the texts, a line each.
const maxQueriesRecordBytes = 256 << 20

// QueriesRecordPath is where the record of the queries file path would be:
// path with its .npy replaced by .json; "" for a path without .npy.
func QueriesRecordPath(path string) string {
	stem, ok := strings.CutSuffix(path, ".npy")
	if !ok {
		return ""
	}
	return stem + ".json"
}

// QueriesRecord is what a queries record says of the queries beside it.
type QueriesRecord struct {
	// Encoders names the CLIP model that embedded the queries.
	Encoders Encoders
	// Texts is the text of each query row, in order (nil in a record
	// without them).
	Texts []string
}

// ReadQueriesRecord reads the record of the queries file path
// (QueriesRecordPath): nil, with no error, when there is none (no such
// file, or a file there that is no queries record: a user's own JSON of
// that name). A record that cannot be read, or that describes another
// file than path (by the SHA-256 of its bytes: the queries were written
// again another way since), is an error.
func ReadQueriesRecord(path string) (*QueriesRecord, error) {
	recPath := QueriesRecordPath(path)
	if recPath == "" {
		return nil, nil
	}
	b, err := atomicfile.ReadRegular(recPath, maxQueriesRecordBytes)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return nil, err
	}
	// A record is tagged so under "format" as Python spells it; a file
	// without the tag is a user's own. (The tag of the first value: what
	// follows it is the strict reading's to refuse.)
	var fields map[string]json.RawMessage
	var format string
	if json.NewDecoder(bytes.NewReader(b)).Decode(&fields) != nil || json.Unmarshal(fields["format"], &format) != nil || !strings.HasPrefix(format, "dinoclip-queries/") {
		return nil, nil
	}
	if format != QueriesRecordFormat {
		return nil, fmt.Errorf("%s: format %q, want %q (a newer dinoclip's)", recPath, format, QueriesRecordFormat)
	}
	// A record, then, read as strictly as any other of dinoclip's.
	var rec struct {
		Format string   `json:"format"`
		CLIP   string   `json:"clip"`
		Source string   `json:"source"`
		Rows   int      `json:"rows"`
		Dim    int      `json:"dim"`
		SHA256 string   `json:"sha256"`
		Texts  []string `json:"texts"`
	}
	if err := strictjson.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", recPath, err)
	}
	if err := checkName(CLIPKey, rec.CLIP); err != nil {
		return nil, fmt.Errorf("%s: %w", recPath, err)
	}
	if rec.SHA256 == "" {
		return nil, fmt.Errorf("%s: no sha256 of the queries it describes", recPath)
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return nil, err
	}
	if sum != rec.SHA256 {
		return nil, fmt.Errorf("%s describes another %s than the one there (its sha256 differs: the file was written again since)", recPath, filepath.Base(path))
	}
	return &QueriesRecord{Encoders: Encoders{CLIP: rec.CLIP}, Texts: rec.Texts}, nil
}

// fileSHA256 is the hex SHA-256 of the bytes of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
