package strictjson

import (
	"encoding/json"
	"strings"
	"testing"
)

type doc struct {
	A int               `json:"a"`
	B []struct{ C int } `json:"b"`
	M map[string]int    `json:"m"`
}

func TestUnmarshal(t *testing.T) {
	var d doc
	if err := Unmarshal([]byte(" {\"a\": 1, \"b\": [{\"C\": 2}, {\"C\": 3}], \"m\": {\"x\": 4, \"y\": 5}}\n\t "), &d); err != nil {
		t.Fatal(err)
	}
	if d.A != 1 || len(d.B) != 2 || d.B[1].C != 3 || d.M["y"] != 5 {
		t.Errorf("decoded %+v", d)
	}
	for _, c := range []struct{ name, json, want string }{
		{"duplicate at the top", `{"a": 1, "a": 2}`, `"a" appears twice`},
		{"duplicate in an array's object", `{"b": [{"C": 1}, {"C": 2, "C": 3}]}`, `"C" appears twice`},
		{"duplicate in a map", `{"m": {"x": 1, "x": 2}}`, `"x" appears twice`},
		{"duplicate in another case", `{"a": 1, "A": 2}`, `"A" appears twice`},
		{"duplicate by Unicode folding", "{\"m\": {\"k\": 1, \"\u212a\": 2}}", "appears twice"},
		{"unknown field", `{"a": 1, "z": 2}`, `unknown field "z"`},
		{"trailing value", `{"a": 1} {"a": 2}`, "data after the JSON value"},
		{"trailing garbage", `{"a": 1}x`, "data after the JSON value"},
		{"truncated", `{"a": 1`, "EOF"},
		{"empty", ``, "no JSON value"},
		{"not UTF-8", "{\"a\": 1, \"m\": {\"\xff\": 2}}", "not UTF-8 text"},
		{"byte-order mark", "\uFEFF{\"a\": 1}", "byte-order mark"},
		// (Said of the field, not in Go's types, even where CheckKeys reads it.)
		{"a number beyond float64", `{"a": 1e400}`, "field a: number 1e400: want an integer in the range this field takes"},
	} {
		var d doc
		err := Unmarshal([]byte(c.json), &d)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	// CheckKeys, of keys only, takes a number that fits no float64, where
	// a reader of part of a document does not know its field.
	if err := CheckKeys([]byte(`{"x": {"y": 10e700}}`)); err != nil {
		t.Errorf("CheckKeys of a number beyond float64: %v", err)
	}
	// The same key in two different objects is fine.
	if err := Unmarshal([]byte(`{"b": [{"C": 1}, {"C": 2}]}`), &d); err != nil {
		t.Errorf("a key in two sibling objects: %v", err)
	}
}

// Nesting is bounded: MaxDepth levels are read, one more is refused before
// any recursion past it, even in a document of a million brackets (which
// would otherwise overflow the stack: about 1 GB of it).
func TestMaxDepth(t *testing.T) {
	nested := func(n int) []byte {
		return []byte(`{"m": {"x": 1}, "b": [{"C": 1}], "z": ` + strings.Repeat("[", n) + strings.Repeat("]", n) + "}")
	}
	var v map[string]any
	if err := Unmarshal(nested(MaxDepth-1), &v); err != nil { // the object is a level too
		t.Errorf("%d levels: %v", MaxDepth, err)
	}
	for _, n := range []int{MaxDepth, 1_500_000} {
		if err := Unmarshal(nested(n), &v); err == nil || !strings.Contains(err.Error(), "nested more than 100 deep") {
			t.Errorf("%d levels: %v, want a refusal of the nesting", n+1, err)
		}
	}
}

// A value of the wrong kind is described in JSON's terms, naming the
// field, not the Go type it would have been decoded into; other errors
// are as they were.
func TestDescribe(t *testing.T) {
	type inner struct {
		Rate float64 `json:"rate"`
	}
	type Embedded struct {
		On bool `json:"on"`
	}
	var v struct {
		Name  string `json:"name"`
		Count int32  `json:"count"`
		In    inner  `json:"in"`
		Embedded
	}
	for _, c := range []struct{ json, want string }{
		{`[1, 2]`, "the document: a JSON array where an object belongs"},
		{`{"name": 3}`, "field name: a JSON number where a string belongs"},
		{`{"count": 1e30}`, "field count: number 1e30: want an integer in the range this field takes"},
		{`{"count": 1.5}`, "field count: number 1.5: want an integer in the range this field takes"},
		{`{"in": {"rate": 1e999}}`, "field in.rate: number 1e999: want a number in the range this field takes"},
		{`{"in": []}`, "field in: a JSON array where an object belongs"},
		// (Not "Embedded.on": the document holds no such key.)
		{`{"on": 1}`, "field on: a JSON number where true or false belongs"},
		{`{"name": true}`, "field name: true or false where a string belongs"},
	} {
		err := Describe(json.Unmarshal([]byte(c.json), &v))
		if err == nil || err.Error() != c.want || strings.Contains(err.Error(), "Go ") {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
	syntax := json.Unmarshal([]byte(`{"name":`), &v)
	if got := Describe(syntax); got != syntax {
		t.Errorf("a syntax error became %v", got)
	}
	if Describe(nil) != nil {
		t.Error("Describe(nil) is not nil")
	}
}
