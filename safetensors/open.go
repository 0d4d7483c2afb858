package safetensors

// Opening a file: mapping it into memory (or taking the caller's bytes),
// splitting the header length, header and data buffer, and the File that
// holds them. header.go parses the header, layout.go checks the buffer
// against it, tensors.go reads the tensors.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/dinoclip/dinoclip/internal/mmapfault"
	"github.com/dinoclip/dinoclip/internal/mmapfile"
	"github.com/edsrzf/mmap-go"
)

// File is an opened safetensors file. Its tensors stay in the file
// (memory-mapped) or in the caller's buffer (Read) until asked for.
//
// All methods are safe for concurrent use, including Close, which waits
// for reads in progress; reads after Close return ErrClosed.
type File struct {
	name      string
	tensors   []TensorInfo // in buffer order
	index     map[string]int
	metadata  map[string]string
	headerLen int    // N, the JSON header's length in bytes
	buf       []byte // the data buffer
	// sha256 is the tensors' hash recorded in the metadata (SHA256Key;
	// nil if none); verify checks it once, before the first tensor read.
	sha256     []byte
	verifyOnce sync.Once
	verifyErr  error

	mu     sync.RWMutex
	mm     mmap.MMap // nil unless opened with Open
	closed bool
}

// Open memory-maps and validates the safetensors file at path. The File
// must be closed to release the mapping.
func Open(path string) (*File, error) {
	m, err := mmapfile.Map(path, func(size int64) error {
		if size < 8 {
			// Also covers the empty file, which mmap cannot map.
			return errorf(ErrSize, "file is %d bytes, too short for the 8-byte header length", size)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	sf, err := parse(path, m)
	if err != nil {
		mmapfile.Unmap(m)
		return nil, err
	}
	sf.mm = m
	return sf, nil
}

// Read validates b as the complete contents of a safetensors file and
// returns a File over it without copying; b must not be modified while
// the File is in use.
func Read(b []byte) (*File, error) { return parse("<memory>", b) }

func parse(name string, b []byte) (*File, error) {
	var f *File
	var err error
	// The file being truncated by another process while we read it would
	// fault; make that an error rather than a crash.
	if ferr := mmapfault.Guard(func() { f, err = parseBytes(name, b) }); ferr != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", name, ferr)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", name, err)
	}
	return f, nil
}

func parseBytes(name string, b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, errorf(ErrSize, "file is %d bytes, too short for the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	// torch.save writes a zip archive (PyTorch 1.6 on) or a bare pickle
	// (protocol 2 and later start with 0x80 and the protocol): the original
	// checkpoint's format. Said so only when the bytes make no header
	// length either (a valid one may begin with the same bytes: 0x80 0x02
	// is a length of 640 mod 65536), and no header's opening brace follows
	// (a safetensors file cut short; neither of torch's formats has one
	// there).
	cutShort := len(b) > 8 && b[8] == '{'
	if (n > MaxHeaderSize || n > uint64(len(b)-8)) && !cutShort && (bytes.HasPrefix(b, []byte("PK\x03\x04")) || (b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)) {
		return nil, errorf(ErrSize, "a PyTorch file (torch.save's format), not safetensors: python -m dinoclip.convert to-dinoclip converts a state_dict")
	}
	if n > MaxHeaderSize && bytes.HasPrefix(b, []byte("\x93NUMPY")) {
		return nil, errorf(ErrSize, "a .npy array (numpy's format), not safetensors: a model is a .safetensors file")
	}
	if n > MaxHeaderSize {
		return nil, errorf(ErrSize, "header length %d exceeds the %d-byte limit (not a safetensors file?)", n, MaxHeaderSize)
	}
	if n > uint64(len(b)-8) {
		kind := ErrSize
		if cutShort {
			kind = ErrCutShort
		}
		return nil, errorf(kind, "header length %d exceeds the %d bytes that follow it (file truncated?)", n, len(b)-8)
	}
	hdr := b[8 : 8+n]
	buf := b[8+n:]
	tensors, meta, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if err := checkLayout(tensors, len(buf)); err != nil {
		if errors.Is(err, ErrDataCutShort) {
			return nil, &DataCutShortError{Metadata: meta, err: err}
		}
		return nil, err
	}
	sum, err := recordedSHA256(meta)
	if err != nil {
		return nil, err
	}
	f := &File{name: name, tensors: tensors, metadata: meta, headerLen: int(n), buf: buf, sha256: sum,
		index: make(map[string]int, len(tensors))}
	for i, t := range tensors {
		f.index[t.Name] = i
	}
	return f, nil
}

// Name is the path the File was opened with ("<memory>" for Read).
func (f *File) Name() string { return f.name }

// HeaderLen is the length N of the JSON header in bytes; the data buffer
// starts at byte 8+N of the file.
func (f *File) HeaderLen() int { return f.headerLen }

// Close releases the memory mapping. It waits for reads in progress;
// reads after Close fail with ErrClosed. Closing twice is a no-op.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.buf = nil
	if f.mm != nil {
		err := mmapfile.Unmap(f.mm)
		f.mm = nil
		if err != nil {
			return fmt.Errorf("safetensors: %s: unmap: %w", f.name, err)
		}
	}
	return nil
}
