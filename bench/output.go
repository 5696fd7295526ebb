package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Report is what every suite produces: a table for the terminal, a
// Markdown page and PNG charts for an output folder, and JSON.
type Report interface {
	WriteTable(w io.Writer) error
	WriteMarkdown(w io.Writer, charts []string) error
	WriteCharts(dir string) ([]string, error)
}

// WriteOutput writes a report into dir (created if missing): report.json,
// the charts, and README.md showing them.
func WriteOutput(dir string, r Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output %s: %w", dir, err)
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	charts, err := r.WriteCharts(dir)
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md, charts); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), md.Bytes(), 0o644)
}
