package leasehandler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/supervise"
)

// A command job runs a program or script of the app's files once per occurrence, as cron runs one on a machine:
// with COSMOSLEASE_OCCURRENCE (RFC 3339, UTC), COSMOSLEASE_EPOCH, COSMOSLEASE_REGION, COSMOSLEASE_LEASE and
// COSMOSLEASE_INSTANCE in its environment, in the app's root (the handler's working directory). Its output goes
// to the invocation's logs, line by line, and its exit status into the run record; a status other than 0 fails
// the run. It runs under internal/supervise: in a process group of its own that dies with the handler however
// the handler dies; when the lease is lost or the invocation's deadline comes, the group gets SIGTERM, then
// SIGKILL after half the run's grace; when the command exits, what it left running in its group is stopped too.
// The run is recorded only once the group is gone, so nothing of one run outlives it.

// maxLineBytes bounds one line of a command's output in the logs; the rest of a longer line is dropped.
const maxLineBytes = 16 << 10

// commandWork checks a command job's command line (the value of setting) and returns its work. A program named
// with a path (scripts/nightly.sh, ./run) is in dir, the app's root; a bare name (python3, bash) is looked up on
// PATH. It refuses at load what could only fail at every occurrence: an empty line, an unclosed quote, a program
// that is missing or cannot be executed.
func commandWork(setting, line, dir string, grace func() time.Duration) (WorkFunc, error) {
	argv, err := SplitCommand(line)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v", setting, line, err)
	}
	if _, err := supervise.Check(argv, dir, nil); err != nil {
		var se *supervise.StartError
		if errors.As(err, &se) && se.Code == 127 && strings.ContainsAny(argv[0], `/\`) {
			return nil, fmt.Errorf("%s: %v: it is not in the app's files; package it with the handler (cosmoslease deploy --include DIR)", setting, err)
		}
		return nil, fmt.Errorf("%s: %v", setting, err)
	}
	return func(ctx context.Context, run Run) error {
		env := append(os.Environ(), run.run.Env()...)
		stdout, stderr := &lineWriter{logf: run.Logf}, &lineWriter{logf: run.Logf}
		st := supervise.Run(ctx, supervise.Cmd{Argv: argv, Dir: dir, Env: env, Stdout: stdout, Stderr: stderr, Grace: grace() / 2})
		stdout.flush()
		stderr.flush()
		if st.Code >= 0 {
			run.SetExitCode(st.Code)
		}
		if st.Leftovers {
			run.Logf("%s left processes running in its group when it exited; they were stopped", argv[0])
		}
		switch {
		case st.StillRunning:
			return fmt.Errorf("%s: processes of its group were still running after SIGKILL and may run on (%s)", argv[0], st)
		case st.Err != nil:
			return fmt.Errorf("%s: %v", argv[0], st.Err)
		case ctx.Err() != nil:
			return fmt.Errorf("%s stopped (%s): %w", argv[0], st, context.Cause(ctx))
		case st.Code != 0:
			return fmt.Errorf("%s ended with %s", argv[0], st)
		}
		return nil
	}, nil
}

// SplitCommand is how the handler reads a command job's command line (LeaseJobs__NAME__Command): it splits it
// into words as a POSIX shell would, without expanding anything. Blanks separate words; single quotes keep
// everything; double quotes keep everything but \" and \\; a backslash outside quotes keeps the next character.
func SplitCommand(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("a single quote is not closed")
			}
			w.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\') {
					i++
				}
				w.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New("a double quote is not closed")
			}
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			w.WriteByte(line[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return nil, errors.New("the command line is empty: name a program or script of the app's files, with its arguments")
	}
	return words, nil
}

// lineWriter sends what is written to it to logf, one line at a time; a line longer than maxLineBytes is cut.
type lineWriter struct {
	mu   sync.Mutex
	logf func(string, ...any)
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.add(p)
			break
		}
		w.add(p[:i])
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) add(p []byte) {
	if room := maxLineBytes - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(len(p), room)]...)
	}
}

func (w *lineWriter) emit() {
	w.logf("%s", bytes.TrimSuffix(w.buf, []byte("\r")))
	w.buf = w.buf[:0]
}

// flush sends a last line that had no newline.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit()
	}
}
