package leasehandler

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// A command job runs a program or script of the app's files once per occurrence, as cron runs one on a machine:
// with COSMOSLEASE_OCCURRENCE (RFC 3339, UTC), COSMOSLEASE_EPOCH, COSMOSLEASE_REGION, COSMOSLEASE_LEASE and
// COSMOSLEASE_INSTANCE in its environment, in the app's root (the handler's working directory). Its output goes
// to the invocation's logs, line by line, and its exit status into the run record; a status other than 0 fails
// the run. It runs in a process group of its own, which dies with the handler; when the lease is lost or the
// invocation's deadline comes, the group gets SIGTERM, then SIGKILL after half the run's grace; when the command
// exits, what it left running in its group is killed, so nothing of one run outlives it.

// maxLineBytes bounds one line of a command's output in the logs; the rest of a longer line is dropped.
const maxLineBytes = 16 << 10

// commandWork checks a command job's command line (the value of setting) and returns its work. Relative
// programs with a path (scripts/nightly.sh, ./run) are in dir, the app's root; bare names (python3, bash) are
// looked up on PATH. It refuses at load what could only fail at every occurrence: an empty line, an unclosed
// quote, a program that is missing or not executable.
func commandWork(setting, line, dir string, grace func() time.Duration) (WorkFunc, error) {
	argv, err := splitCommand(line)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v", setting, line, err)
	}
	prog, err := resolveProgram(argv[0], dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", setting, err)
	}
	return func(ctx context.Context, run Run) error {
		env := append(os.Environ(),
			"COSMOSLEASE_OCCURRENCE="+run.Occurrence.UTC().Format(time.RFC3339),
			"COSMOSLEASE_EPOCH="+strconv.FormatInt(run.Epoch, 10),
			"COSMOSLEASE_REGION="+run.Region,
			"COSMOSLEASE_LEASE="+run.Key,
			"COSMOSLEASE_INSTANCE="+run.Instance)
		code, err := runCommand(ctx, prog, argv[1:], dir, env, run.Logf, grace()/2)
		if code >= 0 {
			run.SetExitCode(code)
		}
		switch {
		case err != nil:
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("%s stopped (exit status %d): %w", argv[0], code, context.Cause(ctx))
		case code != 0:
			return fmt.Errorf("%s exited with status %d", argv[0], code)
		}
		return nil
	}, nil
}

// resolveProgram finds the program a command line names.
func resolveProgram(name, dir string) (string, error) {
	if !strings.ContainsAny(name, `/\`) {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%s is not on PATH; a program or script of the app's files is named with its path, such as ./%s or scripts/%s", name, name, name)
		}
		return p, nil
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return "", fmt.Errorf("%s is not in the app's files (%v): package it with the handler (cosmoslease deploy --include DIR)", name, errors.Unwrap(err))
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s is not a file", name)
	case runtime.GOOS != "windows" && fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%s is not executable (mode %v): make it executable before packaging (chmod +x; the zip keeps the mode), or name its interpreter first, such as bash %s", name, fi.Mode().Perm(), name)
	}
	return p, nil
}

// splitCommand splits a command line into words as a POSIX shell would, without expanding anything: blanks
// separate words; single quotes keep everything; double quotes keep everything but \" and \\; a backslash
// outside quotes keeps the next character.
func splitCommand(line string) ([]string, error) {
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

// runCommand runs prog in a process group of its own until it exits or ctx ends (then the group gets SIGTERM,
// and SIGKILL after grace), and returns its exit status: the process's code, or 128 + the signal that ended it
// (as shells report it), or -1 when it never started. Its output goes to logf line by line.
func runCommand(ctx context.Context, prog string, args []string, dir string, env []string, logf func(string, ...any), grace time.Duration) (int, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	cmd := exec.Command(prog, args...)
	cmd.Dir, cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = dir, env, nil, outW, outW
	p, err := startSupervised(cmd)
	outW.Close() // the child has its own copy; the reader sees EOF once every holder has closed it
	if err != nil {
		outR.Close()
		return -1, fmt.Errorf("cannot start %s: %v", prog, err)
	}
	lines := copyLines(outR, logf)
	exited := make(chan struct{})
	var state *os.ProcessState
	var waitErr error
	go func() { state, waitErr = cmd.Process.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-ctx.Done():
		p.terminate()
		select {
		case <-exited:
		case <-time.After(grace):
		}
	}
	// Whatever the command leaves in its group dies with its run; a member that made a group of its own and kept
	// the output open is not waited for long.
	p.kill()
	<-exited
	select {
	case <-lines:
	case <-time.After(2 * time.Second):
		outR.Close()
		<-lines
	}
	if waitErr != nil {
		return -1, waitErr
	}
	return exitStatus(state), nil
}

// copyLines sends each line read from r to logf, and closes the channel it returns at EOF.
func copyLines(r io.ReadCloser, logf func(string, ...any)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		br := bufio.NewReaderSize(r, 4096)
		var line []byte
		for {
			chunk, isPrefix, err := br.ReadLine()
			if len(line) < maxLineBytes {
				line = append(line, chunk[:min(len(chunk), maxLineBytes-len(line))]...)
			}
			if err != nil {
				if len(line) > 0 {
					logf("%s", line)
				}
				return
			}
			if !isPrefix {
				logf("%s", line)
				line = line[:0]
			}
		}
	}()
	return done
}

// group is a started command's process group (supervise_*.go).
type group interface {
	terminate() // SIGTERM to every member
	kill()      // SIGKILL to every member
}
