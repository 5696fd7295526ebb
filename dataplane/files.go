package dataplane

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// appliedFile is the record of the last apply, in the state directory.
const appliedFile = "applied.json"

// ReadApplied reads the record of the last apply from a state directory.
func ReadApplied(stateDir string) (*Applied, error) {
	raw, err := os.ReadFile(filepath.Join(stateDir, appliedFile))
	if err != nil {
		return nil, err
	}
	var a Applied
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(stateDir, appliedFile), err)
	}
	return &a, nil
}

// writeJSON replaces path atomically, so a reader never sees half a file.
func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
