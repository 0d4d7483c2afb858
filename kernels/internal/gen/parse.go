package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"github.com/dinoclip/dinoclip/internal/kernelhash"
)

// paramType is one kernel parameter type the generator knows: how the
// source spells it (normalised), its Go type in package launch, its size in
// bytes as the driver copies it, and the packing function of package launch.
type paramType struct {
	c      string // normalised C spelling, e.g. "const float*"
	goType string // e.g. "ConstPtr[float32]"
	bytes  int
	pack   string // e.g. "ptr" (a function of package launch)
}

// element types a pointer parameter may point to, with their Go twins.
var elements = map[string]string{
	"float":              "float32",
	"double":             "float64",
	"__half":             "Float16",
	"__nv_bfloat16":      "BFloat16",
	"int":                "int32",
	"unsigned":           "uint32",
	"unsigned int":       "uint32",
	"long long":          "int64",
	"unsigned long long": "uint64",
	"short":              "int16",
	"unsigned short":     "uint16",
	"unsigned char":      "uint8",
	"signed char":        "int8",
	"uint8_t":            "uint8",
	"uint16_t":           "uint16",
	"uint32_t":           "uint32",
	"uint64_t":           "uint64",
	"int32_t":            "int32",
	"int64_t":            "int64",
}

// scalars are the by-value parameter types.
var scalars = map[string]paramType{
	"int":                {"int", "int32", 4, "i32"},
	"unsigned":           {"unsigned", "uint32", 4, "u32"},
	"unsigned int":       {"unsigned int", "uint32", 4, "u32"},
	"long long":          {"long long", "int64", 8, "i64"},
	"unsigned long long": {"unsigned long long", "uint64", 8, "u64"},
	"float":              {"float", "float32", 4, "f32"},
	"double":             {"double", "float64", 8, "f64"},
	// A TMA descriptor, passed by value in the kernel's parameter space
	// (dc_tensor_map of kernels/tensorcore.cuh: CUtensorMap's 128 bytes
	// without the CUDA 12 header).
	"const __grid_constant__ dc_tensor_map": {"const __grid_constant__ dc_tensor_map", "driver.TensorMap", 128, "tensorMap"},
}

// Param is one parameter of a kernel.
type Param struct {
	Name string
	Type paramType
}

// Kernel is one extern "C" __global__ entry point.
type Kernel struct {
	Name   string
	Module string // base name of its source file
	Line   int
	Params []Param
}

// Module is one kernels/NAME.cu with its entry points in source order.
type Module struct {
	Name    string
	Kernels []Kernel
	// Source is kernelhash.Sources' hash of what the module compiles
	// from, which the emulator records (cuda/emu/sources_gen.go).
	Source string
}

// parseDir parses every *.cu of dir, in name order.
func parseDir(dir string) ([]Module, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.cu"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no .cu files in %s", dir)
	}
	hashes, err := kernelhash.Sources(dir)
	if err != nil {
		return nil, err
	}
	var mods []Module
	seen := map[string]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(filepath.Base(f), ".cu")
		ks, err := parseSource(filepath.ToSlash(filepath.Join("kernels", filepath.Base(f))), name, string(src))
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			if prev, dup := seen[k.Name]; dup {
				return nil, fmt.Errorf("kernels/%s.cu:%d: kernel %s is also defined in kernels/%s.cu", name, k.Line, k.Name, prev)
			}
			seen[k.Name] = name
		}
		mods = append(mods, Module{Name: name, Kernels: ks, Source: hashes[name]})
	}
	return mods, nil
}

// stripComments blanks out comments and string contents other than the
// "C" of extern "C", keeping newlines so that line numbers stay right.
func stripComments(src string) string {
	b := []byte(src)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '/':
			for ; i < len(b) && b[i] != '\n'; i++ {
				b[i] = ' '
			}
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '*':
			for ; i < len(b) && !(b[i] == '*' && i+1 < len(b) && b[i+1] == '/'); i++ {
				if b[i] != '\n' {
					b[i] = ' '
				}
			}
			if i < len(b) {
				b[i], b[i+1] = ' ', ' '
				i++
			}
		}
	}
	return string(b)
}

// parseSource finds every `extern "C" __global__` function of src (the file
// path for errors, module its base name).
func parseSource(path, module, src string) ([]Kernel, error) {
	text := stripComments(src)
	var ks []Kernel
	const marker = `extern "C"`
	for at := 0; ; {
		i := strings.Index(text[at:], marker)
		if i < 0 {
			break
		}
		start := at + i
		at = start + len(marker)
		line := 1 + strings.Count(text[:start], "\n")
		rest := strings.TrimLeftFunc(text[at:], unicode.IsSpace)
		if !strings.HasPrefix(rest, "__global__") {
			continue // an extern "C" host or device function: not a kernel
		}
		open := strings.IndexByte(text[at:], '(')
		if open < 0 {
			return nil, fmt.Errorf("%s:%d: kernel without a parameter list", path, line)
		}
		// The declarator: __global__ void [__launch_bounds__(...)] name(
		head := text[at : at+open]
		pos := at + open
		if strings.HasSuffix(strings.TrimSpace(head), "__launch_bounds__") {
			close := matching(text, pos)
			if close < 0 {
				return nil, fmt.Errorf("%s:%d: unbalanced __launch_bounds__(", path, line)
			}
			next := strings.IndexByte(text[close:], '(')
			if next < 0 {
				return nil, fmt.Errorf("%s:%d: kernel without a parameter list", path, line)
			}
			head = strings.TrimSpace(head) + " " + text[close+1:close+next]
			pos = close + next
		}
		words := strings.Fields(head)
		if len(words) < 3 || words[0] != "__global__" || words[1] != "void" {
			return nil, fmt.Errorf("%s:%d: cannot read the kernel declaration %q (want extern \"C\" __global__ void [__launch_bounds__(...)] name(...))", path, line, strings.Join(words, " "))
		}
		name := words[len(words)-1]
		if !isIdent(name) {
			return nil, fmt.Errorf("%s:%d: kernel name %q is not an identifier", path, line, name)
		}
		close := matching(text, pos)
		if close < 0 {
			return nil, fmt.Errorf("%s:%d: %s: unbalanced parameter list", path, line, name)
		}
		params, err := parseParams(text[pos+1 : close])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: kernel %s: %w", path, line, name, err)
		}
		ks = append(ks, Kernel{Name: name, Module: module, Line: line, Params: params})
		at = close
	}
	return ks, nil
}

// matching returns the index of the ')' that closes the '(' at open, or -1.
func matching(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

// parseParams reads a comma-separated parameter list.
func parseParams(list string) ([]Param, error) {
	if strings.TrimSpace(list) == "" || strings.TrimSpace(list) == "void" {
		return nil, nil
	}
	var ps []Param
	names := map[string]bool{}
	for _, raw := range strings.Split(list, ",") {
		p, err := parseParam(raw)
		if err != nil {
			return nil, err
		}
		if names[p.Name] {
			return nil, fmt.Errorf("parameter %s appears twice", p.Name)
		}
		names[p.Name] = true
		ps = append(ps, p)
	}
	return ps, nil
}

// parseParam reads one parameter: a known type and a name. Anything else
// (references, arrays, default values, unknown types, unnamed parameters)
// is an error, so a new kind of parameter must be taught to the generator
// rather than packed wrongly.
func parseParam(raw string) (Param, error) {
	s := strings.TrimSpace(raw)
	// Put the '*' apart so that "float* p", "float *p" and "float*p" read alike.
	s = strings.ReplaceAll(s, "*", " * ")
	words := strings.Fields(s)
	if len(words) < 2 {
		return Param{}, fmt.Errorf("parameter %q: want a type and a name", strings.TrimSpace(raw))
	}
	name := words[len(words)-1]
	if !isIdent(name) {
		return Param{}, fmt.Errorf("parameter %q: %q is not a name", strings.TrimSpace(raw), name)
	}
	var typ []string
	for _, w := range words[:len(words)-1] {
		if w == "__restrict__" || w == "__restrict" {
			continue // a promise to the compiler, not part of what is passed
		}
		typ = append(typ, w)
	}
	t, err := lookupType(typ)
	if err != nil {
		return Param{}, fmt.Errorf("parameter %s: %w", name, err)
	}
	return Param{Name: name, Type: t}, nil
}

// lookupType maps the words of a parameter type to a known type.
func lookupType(words []string) (paramType, error) {
	spelled := strings.Join(words, " ")
	n := len(words)
	if n > 0 && words[n-1] == "*" {
		elem := words[:n-1]
		isConst := false
		if len(elem) > 0 && elem[0] == "const" {
			isConst, elem = true, elem[1:]
		} else if len(elem) > 0 && elem[len(elem)-1] == "const" {
			isConst, elem = true, elem[:len(elem)-1]
		}
		goElem, ok := elements[strings.Join(elem, " ")]
		if !ok {
			return paramType{}, fmt.Errorf("unknown parameter type %q (the generator knows pointers to %s)", spelled, knownElements())
		}
		c := strings.Join(elem, " ") + "*"
		g := "Ptr[" + goElem + "]"
		if isConst {
			c, g = "const "+c, "ConstPtr["+goElem+"]"
		}
		return paramType{c: c, goType: g, bytes: 8, pack: "ptr"}, nil
	}
	if t, ok := scalars[spelled]; ok {
		return t, nil
	}
	return paramType{}, fmt.Errorf("unknown parameter type %q (the generator knows pointers to %s, by value %s)", spelled, knownElements(), knownScalars())
}

func knownElements() string {
	var ks []string
	for k := range elements {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

func knownScalars() string {
	var ks []string
	for k := range scalars {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}
