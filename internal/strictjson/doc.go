// Package strictjson decodes JSON that a program wrote for itself (an
// index manifest) and must read back exactly: where encoding/json keeps the
// last of duplicated keys, ignores unknown fields and stops reading after
// the first value, a document that does any of that here is an error, so a
// tampered or spliced file is refused rather than half-believed.
package strictjson
