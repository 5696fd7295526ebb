package state

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"time"
)

// FileProducer is a Producer reading the desired state from a JSON file
// (see LoadFile). It sends the state at start, again whenever the file's
// content changes (polled every Interval) or Reload fires (SIGHUP), and
// keeps the last good state when the file becomes invalid: the error is
// logged and nothing is sent.
type FileProducer struct {
	Path     string
	Interval time.Duration   // default 1s
	Reload   <-chan struct{} // optional
	Log      *slog.Logger
}

// Run implements Producer.
func (f *FileProducer) Run(ctx context.Context, updates chan<- *Desired) error {
	interval := f.Interval
	if interval <= 0 {
		interval = time.Second
	}
	log := f.Log
	if log == nil {
		log = slog.Default()
	}
	var last []byte
	load := func(force bool) {
		raw, err := os.ReadFile(f.Path)
		if err != nil {
			log.Error("read state file", "path", f.Path, "err", err)
			return
		}
		if !force && last != nil && bytes.Equal(raw, last) {
			return
		}
		last = raw
		d, err := parseFile(f.Path, raw)
		if err != nil {
			log.Error("state file rejected, keeping the last good state", "err", err)
			return
		}
		select {
		case updates <- d:
		case <-ctx.Done():
		}
	}
	load(true)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			load(false)
		case <-f.Reload:
			log.Info("reloading state file", "path", f.Path)
			load(true)
		}
	}
}
