package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseEncoders(t *testing.T) {
	for _, c := range []struct {
		json string
		want Encoders
		err  string
	}{
		{`{"dinov2": "d", "clip": "c", "shards": {"a": 1}}`, Encoders{DINOv2: "d", CLIP: "c"}, ""},
		{`{"dinov2": "d", "clip": null}`, Encoders{DINOv2: "d"}, ""}, // --target none
		{`{"target": "image"}`, Encoders{}, ""},
		{`{"dinov2": 3}`, Encoders{}, `dinov2: the number 3, not a string`},
		{"{\"clip\": {\"a\u0085\u202e\": 1}}", Encoders{}, `clip: an object, not a string`}, // (its text is not shown)
		{`{"clip": [1]}`, Encoders{}, `clip: an array, not a string`},
		{`{"clip": true}`, Encoders{}, `clip: the boolean true, not a string`},
		{`{"clip": "a", "clip": "b"}`, Encoders{}, `key "clip" appears twice`}, // (encoding/json would take the last)
		{`{"clip": "a", "CLIP": "b"}`, Encoders{CLIP: "a"}, ""},                // (not the key, as Python reads it)
		{`{"CLIP": "upper", "dinov2": "d"}`, Encoders{DINOv2: "d"}, ""},
		{`{"dinov2": "d", "tars": {"Part": 1, "part": 2}}`, Encoders{DINOv2: "d"}, ""}, // (a record's own keys)
		{"{\"clip\": \"a\xffb\"}", Encoders{}, "not UTF-8"},
		{`{"clip": ""}`, Encoders{}, "no model's name"},
		{`{"clip": "a\u001b[2Kb"}`, Encoders{}, "no model's name"},
		{`{"clip": "a\u200eb"}`, Encoders{}, "no model's name"}, // (a format character: hides or reorders text)
		{`{"clip": "/home/u/モデル\u3000clip"}`, Encoders{CLIP: "/home/u/モデル\u3000clip"}, ""},
		{`{"clip": "` + strings.Repeat("x", maxNameBytes+1) + `"}`, Encoders{}, "no model's name"},
		{`{"clip": "` + strings.Repeat("x", maxNameBytes) + `"}`, Encoders{CLIP: strings.Repeat("x", maxNameBytes)}, ""},
		{`{"clip": "a"`, Encoders{}, "truncated"},
		{`{"clip":`, Encoders{}, "truncated"},
		{`["clip"]`, Encoders{}, "not a JSON object"},
	} {
		got, err := ParseEncoders([]byte(c.json))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.json, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one saying %q", c.json, err, c.err)
		case got != c.want:
			t.Errorf("%s: %+v, want %+v", c.json, got, c.want)
		}
	}
}

func TestEncodersCombine(t *testing.T) {
	a := Encoders{DINOv2: "d", CLIP: "c1"}
	b := Encoders{CLIP: "c2"}
	for _, c := range []struct {
		encs []Encoders
		want Encoders
	}{
		{[]Encoders{a, a, a}, a},
		{[]Encoders{a, {DINOv2: "d", CLIP: "c2"}, a}, Encoders{DINOv2: "d"}}, // (a name dropped stays dropped)
		{[]Encoders{a, b}, Encoders{}},                                       // (b names no DINOv2)
		{[]Encoders{{}, a, a}, Encoders{}},
		{nil, Encoders{}},
	} {
		if got := Agreed(c.encs); got != c.want {
			t.Errorf("Agreed(%+v) = %+v, want %+v", c.encs, got, c.want)
		}
	}
	if got := b.Or(a); got != (Encoders{DINOv2: "d", CLIP: "c2"}) {
		t.Errorf("Or: %+v, want b's CLIP and a's DINOv2", got)
	}
	meta := map[string]string{}
	a.AddTo(meta)
	if got := EncodersOf(meta); got != a {
		t.Errorf("metadata round trip: %+v, want %+v", got, a)
	}
	meta[CLIPKey] = "a\nb" // (a tampered file)
	if got := EncodersOf(meta); got != (Encoders{DINOv2: "d"}) {
		t.Errorf("metadata of a name that is none: %+v, want it unknown", got)
	}
	if Mismatch("x", a, "y", Encoders{DINOv2: "d"}) != "" || Mismatch("x", a, "y", Encoders{}) != "" {
		t.Error("Mismatch of models that agree, or are unknown, is not empty")
	}
	got := Mismatch("x", a, "y", Encoders{DINOv2: "e", CLIP: "c2"})
	if want := `x was made with DINOv2 "d" and CLIP "c1", y with DINOv2 "e" and CLIP "c2": `; !strings.HasPrefix(got, want) {
		t.Errorf("Mismatch: %q, want it to start %q", got, want)
	}
	if got := (Encoders{CLIP: "a\x1b[2Kb"}).String(); got != `embeddings of CLIP "a\x1b[2Kb"` {
		t.Errorf("String: %q: a name's control characters must be shown escaped", got)
	}
}

func TestReadQueriesRecord(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q.clip.npy")
	if err := os.WriteFile(q, []byte("queries"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("queries"))
	hash := hex.EncodeToString(sum[:])
	rec := filepath.Join(dir, "q.clip.json")
	if QueriesRecordPath(q) != rec || QueriesRecordPath(filepath.Join(dir, "q.bin")) != "" {
		t.Fatalf("QueriesRecordPath(%s) = %q", q, QueriesRecordPath(q))
	}
	check := func(record string, want *QueriesRecord, wantErr string) {
		t.Helper()
		if record != "" {
			if err := os.WriteFile(rec, []byte(record), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ReadQueriesRecord(q)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("%s: %v", record, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%s: error %v, want one saying %q", record, err, wantErr)
		case (got == nil) != (want == nil) || got != nil && (got.Encoders != want.Encoders || !slices.Equal(got.Texts, want.Texts)):
			t.Errorf("%s: %+v, want %+v", record, got, want)
		}
	}
	check("", nil, "") // none
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "sha256": "`+hash+`"}`, &QueriesRecord{Encoders: Encoders{CLIP: "c"}}, "")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "sha256": "`+hash+`", "texts": ["a dog", "ünï"]}`,
		&QueriesRecord{Encoders: Encoders{CLIP: "c"}, Texts: []string{"a dog", "ünï"}}, "")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "sha256": "`+strings.Repeat("0", 64)+`"}`, nil, "describes another q.clip.npy")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": null, "sha256": "`+hash+`"}`, nil, "no model's name")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": 5, "sha256": "`+hash+`"}`, nil, "field clip: a JSON number where a string belongs")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "sha256": 5}`, nil, "sha256")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "sha256": "`+hash+`"} {}`, nil, "after")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "sha256": "`+hash+`", "later": 1}`, nil, "later")
	check(`{"format": "dinoclip-queries/2", "clip": "c"}`, nil, "a newer dinoclip's")
	check(`{"FORMAT": "`+QueriesRecordFormat+`", "clip": "c"}`, nil, "") // (no tag, as Python reads it)
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "clip": "d", "sha256": "`+hash+`"}`, nil, `key "clip" appears twice`)
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c"}`, nil, "no sha256")
	check(`{"format": "`+QueriesRecordFormat+`", "clip": "c", "sha256": "`+hash+`", "texts": [1]}`, nil, "texts")
	check(`{"clip": "c"}`, nil, "")   // a user's own JSON
	check(`not json at all`, nil, "") // likewise
}
