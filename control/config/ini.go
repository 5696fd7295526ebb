package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Error is a configuration error: the file, the line (0 when the problem
// is something missing from the file), what is wrong and how to fix it.
type Error struct {
	File string
	Line int
	Msg  string
	Fix  string
}

// Error is "file:line: problem — fix".
func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Fix == "" {
		return where + ": " + e.Msg
	}
	return where + ": " + e.Msg + " — " + e.Fix
}

// option is one "key = value" of an ini file.
type option struct {
	section, key, value string
	file                string
	line                int
}

// iniFile is a parsed ini file in oslo.config's dialect: [section]
// headers, "key = value" or "key: value", '#' and ';' comments, values
// continued on indented lines, sections repeated and merged.
type iniFile struct {
	name     string
	options  []option
	sections map[string]int // section -> line of its first header
}

// parseINI parses data; it returns every syntax error found, each naming
// the file, the line and the fix.
func parseINI(name string, data []byte) (*iniFile, []*Error) {
	f := &iniFile{name: name, sections: map[string]int{}}
	var errs []*Error
	bad := func(line int, msg, fix string) {
		errs = append(errs, &Error{File: name, Line: line, Msg: msg, Fix: fix})
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		if n == 1 {
			raw = strings.TrimPrefix(raw, "\ufeff")
		}
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			// Continuation of the previous value (oslo.config multi-line).
			if len(f.options) > 0 && f.options[len(f.options)-1].section == section && section != "" {
				o := &f.options[len(f.options)-1]
				o.value = strings.TrimSpace(o.value + "\n" + line)
				continue
			}
			bad(n, fmt.Sprintf("unexpected indented line %q", line), "remove the leading whitespace")
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				fixed := strings.TrimRight(line, " \t]") + "]"
				if i := strings.IndexByte(line, ']'); i > 0 {
					fixed = line[:i+1]
				}
				bad(n, fmt.Sprintf("invalid section header %q: must end with \"]\"", line), fmt.Sprintf("write %q", fixed))
				section = strings.TrimSpace(strings.Trim(fixed, "[]"))
				continue
			}
			name := strings.TrimSpace(line[1 : len(line)-1])
			if name == "" || strings.ContainsAny(name, "[]") {
				bad(n, fmt.Sprintf("invalid section header %q", line), "write a section name between brackets, e.g. [vxlan]")
				continue
			}
			section = name
			if _, ok := f.sections[section]; !ok {
				f.sections[section] = n
			}
			continue
		}
		key, value, ok := cutOption(line)
		if !ok {
			fields := strings.Fields(line)
			fix := `write "key = value"`
			if len(fields) >= 2 {
				fix = fmt.Sprintf("write %q", fields[0]+" = "+strings.Join(fields[1:], " "))
			}
			bad(n, fmt.Sprintf("%q is not an option: missing \"=\"", line), fix)
			continue
		}
		if key == "" {
			bad(n, fmt.Sprintf("%q has no option name before \"=\"", line), `write "key = value"`)
			continue
		}
		if section == "" {
			bad(n, fmt.Sprintf("option %q comes before any section", key), "put a section header such as [DEFAULT] above it")
			continue
		}
		f.options = append(f.options, option{section: section, key: key, value: value, file: name, line: n})
	}
	if err := sc.Err(); err != nil {
		bad(n+1, "cannot read: "+err.Error(), "check the file")
	}
	return f, errs
}

// cutOption splits "key = value" or "key: value".
func cutOption(line string) (string, string, bool) {
	i := strings.IndexAny(line, "=:")
	if i < 0 {
		return "", "", false
	}
	return strings.TrimSpace(line[:i]), strings.TrimSpace(unquote(strings.TrimSpace(line[i+1:]))), true
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	return v
}

// levenshtein is the edit distance between a and b.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// closest returns the candidate nearest to s when it is close enough to
// be a typo of it.
func closest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := levenshtein(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= max(1, min(3, len(s)/4+1)) {
		return best
	}
	return ""
}
