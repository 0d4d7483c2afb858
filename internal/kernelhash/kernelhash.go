package kernelhash

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Sources returns, for every module NAME.cu of the kernels directory dir,
// the hex SHA-256 of what it compiles from: NAME.cu and every *.cuh header
// of dir (any of which it may include), each name and length-prefixed, in
// that order and the headers sorted by name.
func Sources(dir string) (map[string]string, error) {
	read := func(pattern string) ([]string, map[string][]byte, error) {
		paths, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, nil, err
		}
		sort.Strings(paths)
		data := map[string][]byte{}
		for _, p := range paths {
			if data[p], err = os.ReadFile(p); err != nil {
				return nil, nil, err
			}
		}
		return paths, data, nil
	}
	modules, sources, err := read("*.cu")
	if err != nil {
		return nil, err
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("no .cu files in %s", dir)
	}
	headers, headerData, err := read("*.cuh")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range modules {
		h := sha256.New()
		add := func(path string, data []byte) {
			name := filepath.Base(path)
			var n [8]byte
			binary.LittleEndian.PutUint64(n[:], uint64(len(name)))
			h.Write(n[:])
			h.Write([]byte(name))
			binary.LittleEndian.PutUint64(n[:], uint64(len(data)))
			h.Write(n[:])
			h.Write(data)
		}
		add(m, sources[m])
		for _, p := range headers {
			add(p, headerData[p])
		}
		out[strings.TrimSuffix(filepath.Base(m), ".cu")] = hex.EncodeToString(h.Sum(nil))
	}
	return out, nil
}
