package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child is a process of the benchmark (an agent, listeners): its stdout
// lines go to onLine, the end of its stderr is kept for errors.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	tail *tailBuffer
}

func startChild(name, binary string, args []string, onLine func([]byte)) (*child, error) {
	cmd := exec.Command(binary, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), tail: &tailBuffer{max: 4096}}
	cmd.Stderr = c.tail
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			onLine(sc.Bytes())
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited says why the process ended, if it did.
func (c *child) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited (%v): %s", c.name, c.err, bytes.TrimSpace(c.tail.bytes()))
	default:
		return nil
	}
}

// stop ends the process gracefully (SIGTERM; SIGKILL after 10s).
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// wait waits for cond, checked whenever poke fires and every 50 ms, until
// timeout; it fails early when one of the children exits.
func wait(ctx context.Context, timeout time.Duration, what func() string, cond func() bool, children ...*child) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		for _, c := range children {
			if err := c.exited(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %s", what(), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.b)
}

var _ io.Writer = (*tailBuffer)(nil)
