package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDepth is how deeply arrays and objects may nest: far beyond what a
// program's own records need, and a bound on the recursion (and the
// memory) a tampered document of millions of brackets would otherwise
// cost before encoding/json's own limit.
const MaxDepth = 100

// Unmarshal decodes the one JSON value in b into v. It fails on bytes that
// are not UTF-8, a byte-order mark before the value, a key repeated within
// an object (at any depth; keys that differ only in case count as the same,
// as encoding/json matches them to the same field), a field v does not
// have, values nested more than MaxDepth deep, or anything but whitespace
// after the value; a value of the wrong kind is described as Describe does.
func Unmarshal(b []byte, v any) error {
	if err := CheckKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Describe(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON value (at byte %d)", dec.InputOffset())
	}
	return nil
}

// CheckKeys fails where Unmarshal would on b's text, keys and nesting
// (bytes that are not UTF-8, a byte-order mark before the value, a key
// repeated within an object, nesting beyond MaxDepth), for a reader that
// decodes only part of a document, whose other fields it does not know.
func CheckKeys(b []byte) error {
	// (encoding/json reads such bytes as U+FFFD, another text than the
	// file's, where Python's json refuses them: the file is refused.)
	if !utf8.Valid(b) {
		return errors.New("not UTF-8 text, as JSON must be")
	}
	// (An editor on Windows may save one. encoding/json would say
	// "invalid character 'ï'", which names no cause; Python's json.loads
	// refuses it too, and RFC 8259 §8.1 says a writer must not add one.)
	if bytes.HasPrefix(b, []byte("\uFEFF")) {
		return errors.New("the text starts with a byte-order mark (U+FEFF), which JSON does not allow (saved by an editor that adds one?)")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	// (Numbers as they are written: a token's float64 fails on one beyond
	// float64's range, 1e400, in words of Go types, and the check is of
	// keys; the decoding that follows says whether the value fits its field.)
	dec.UseNumber()
	err := checkKeys(dec, 0)
	if errors.Is(err, io.EOF) { // (within the value: bare "EOF" says nothing to a reader)
		return fmt.Errorf("the text ends inside its value (a truncated file?): %w", io.ErrUnexpectedEOF)
	}
	return err
}

// checkKeys reads one value from dec, nested depth deep, and fails on a
// key repeated within one of its objects or on nesting beyond MaxDepth.
func checkKeys(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) && depth == 0 {
			return errors.New("no JSON value")
		}
		return err
	}
	if (tok == json.Delim('{') || tok == json.Delim('[')) && depth == MaxDepth {
		return fmt.Errorf("values nested more than %d deep (at byte %d)", MaxDepth, dec.InputOffset())
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key := k.(string) // the decoder checks that object keys are strings
			if seen[fold(key)] {
				return fmt.Errorf("key %q appears twice in one object (keys are matched ignoring case)", key)
			}
			seen[fold(key)] = true
			if err := checkKeys(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for dec.More() {
			if err := checkKeys(dec, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

// fold maps s to one representative of the strings strings.EqualFold
// holds equal to it: each rune replaced by the smallest of its Unicode
// simple case folding orbit (K, k and the Kelvin sign alike).
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// Describe is err, from decoding JSON, in a reader's terms where it is a
// value of the wrong kind: encoding/json names the Go type it decodes into
// ("cannot unmarshal array into Go value of type struct { Name string ...
// }", "Go struct field State.schedule.max_lr of type float64"), which says
// nothing to whoever edited the file. Other errors are returned as they are.
func Describe(err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	at := "the document"
	if field := jsonPath(te.Field); field != "" {
		at = "field " + field
	}
	want := kindName(te.Type.Kind())
	if strings.HasPrefix(te.Value, "number") && (want == "a number" || want == "an integer") {
		// (Of the right kind, then: a fraction for an integer, or out of
		// the range the field's values take.)
		return fmt.Errorf("%s: %s: want %s in the range this field takes", at, te.Value, want)
	}
	got := "a JSON " + te.Value
	if te.Value == "bool" {
		got = "true or false"
	}
	return fmt.Errorf("%s: %s where %s belongs", at, got, want)
}

// jsonPath is field, encoding/json's path to a value, without the names
// of the Go structs it embeds ("State.options.epochs" for options.epochs
// of a document whose Go struct embeds State): names a document does not
// hold. (The documents here name their keys in lower case, and the Go
// structs they embed are exported, named with a capital: train.RunInfo
// embeds State. An embedded unexported struct would stay in the path.)
func jsonPath(field string) string {
	var keep []string
	for _, name := range strings.Split(field, ".") {
		if name != "" && !unicode.IsUpper([]rune(name)[0]) {
			keep = append(keep, name)
		}
	}
	return strings.Join(keep, ".")
}

// kindName is what a value of kind k is called in JSON.
func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	}
	return "another kind of value"
}
