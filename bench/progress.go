package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// progress shows what a long benchmark is doing: one line rewritten in
// place on a terminal, otherwise a line per change at most every few
// seconds (and every phase), so a log stays readable.
type progress struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	last time.Time
	text string
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// phase starts a new step: always shown.
func (p *progress) phase(format string, args ...any) { p.show(true, format, args...) }

// update says how far the step is: shown on a terminal, elsewhere at most
// every 5 seconds.
func (p *progress) update(format string, args ...any) { p.show(false, format, args...) }

func (p *progress) show(force bool, format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	text := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if text == p.text {
		return
	}
	switch {
	case p.tty:
		if force && p.text != "" {
			fmt.Fprintln(p.w) // keep the finished step's last line
		}
		fmt.Fprintf(p.w, "\r\033[K%s", text)
	case force || time.Since(p.last) >= 5*time.Second:
		fmt.Fprintf(p.w, "%s %s\n", time.Now().Format("15:04:05"), text)
		p.last = time.Now()
	default:
		return
	}
	p.text = text
}

// done ends the display (a newline after an in-place line).
func (p *progress) done() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.text != "" {
		fmt.Fprintln(p.w)
	}
	p.text = ""
}
