package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// LoadFile reads a desired state from a JSON file and validates it. Errors
// name the file and, for syntax and type errors, the line.
func LoadFile(path string) (*Desired, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	return parseFile(path, raw)
}

// parseFile parses the content of a state file; entries without a source
// are attributed to the file.
func parseFile(path string, raw []byte) (*Desired, error) {
	d, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	src := Source{Key: "file:" + path}
	for i := range d.Networks {
		defaultSource(&d.Networks[i].Source, src)
	}
	for i := range d.LocalPorts {
		defaultSource(&d.LocalPorts[i].Source, src)
	}
	for i := range d.RemotePorts {
		defaultSource(&d.RemotePorts[i].Source, src)
	}
	return d, nil
}

func defaultSource(s *Source, def Source) {
	if s.Key == "" {
		*s = def
	}
}

// Parse decodes and validates a JSON desired state. Unknown fields are
// errors, so a misspelt key is not silently ignored.
func Parse(raw []byte) (*Desired, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var d Desired
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New(`empty: want a JSON object like {"networks": [], "local_ports": [], "remote_ports": []}`)
		}
		return nil, jsonError(raw, err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// jsonError adds the line of the offending byte to a decoding error.
func jsonError(raw []byte, err error) error {
	var offset int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	}
	if offset < 0 {
		// Errors of a value's own parser (a MAC, an IP) carry no offset:
		// find the quoted value they name.
		if i := strings.IndexByte(err.Error(), '"'); i >= 0 {
			if v, uerr := strconv.QuotedPrefix(err.Error()[i:]); uerr == nil {
				offset = int64(bytes.Index(raw, []byte(v)))
			}
		}
	}
	if offset < 0 {
		return err
	}
	line := 1 + bytes.Count(raw[:min(int(offset), len(raw))], []byte("\n"))
	return fmt.Errorf("line %d: %w", line, err)
}
