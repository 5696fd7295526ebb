package bench

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Progress shows how far a long benchmark is: one line per step with the
// share done and the time left, rewritten in place on a terminal.
type Progress struct {
	w     io.Writer
	tty   bool
	total int
	done  int
	start time.Time
	// lastUpdate is when Update last printed.
	lastUpdate time.Time
}

// NewProgress writes progress to w (nil: nowhere).
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// Start sets the number of steps the benchmark takes.
func (p *Progress) Start(total int) {
	if p == nil {
		return
	}
	p.total, p.done, p.start = total, 0, time.Now()
}

// Step reports that a step begins.
func (p *Progress) Step(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	eta := "?"
	if p.done > 0 {
		left := time.Duration(float64(time.Since(p.start)) / float64(p.done) * float64(p.total-p.done))
		eta = left.Round(time.Second).String()
	}
	line := fmt.Sprintf("[%3d/%d %3.0f%% %s left] %s", p.done+1, p.total, 100*float64(p.done)/float64(max(p.total, 1)), eta,
		fmt.Sprintf(format, args...))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.done++
}

// Logf prints a line that stays, above the progress line on a terminal.
func (p *Progress) Logf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// Done ends the display.
func (p *Progress) Done() {
	if p != nil && p.w != nil && p.tty {
		fmt.Fprintf(p.w, "\r\033[Kdone in %s\n", time.Since(p.start).Round(time.Second))
	}
}

// Update says how far the current step is, without starting another: it
// rewrites the step's line on a terminal, elsewhere it prints at most
// every 5 seconds.
func (p *Progress) Update(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	if !p.tty && time.Since(p.lastUpdate) < 5*time.Second {
		return
	}
	p.lastUpdate = time.Now()
	line := "    " + fmt.Sprintf(format, args...)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}
