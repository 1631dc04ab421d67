package cli

import (
	"context"
	"strings"
	"testing"
	"time"
)

// runWatched starts a command in the background and returns its stdout as it grows, and its result to come.
func (h *harness) runWatched(ctx context.Context, args ...string) (*syncBuffer, <-chan result) {
	var out, errb syncBuffer
	done := make(chan result, 1)
	go func() {
		app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: h.dir,
			Getenv: func(k string) string { return h.env[k] }, Interactive: h.tty,
			wait: func(context.Context, time.Duration) error { return nil }}
		code := app.Run(ctx, append([]string{"cosmoslease"}, args...))
		done <- result{code: code, stdout: out.String(), stderr: errb.String()}
	}()
	return &out, done
}

// Regression (third review, 5): `inspect --watch` kept showing a lease in a deleted container as free (with
// --lease), or gave a bare 404 (without); both now stop with the setup error the create path gives.
func TestInspectWatchInADeletedContainer(t *testing.T) {
	for _, args := range [][]string{{"--lease", DefaultLease}, nil} {
		t.Run(strings.Join(append([]string{"inspect"}, args...), " "), func(t *testing.T) {
			h := newHarness(t).withServer()
			h.ctr = "cli-watch-deleted-" + map[bool]string{true: "one", false: "all"}[args != nil]
			h.env["CosmosLeasing__ContainerName"] = h.ctr
			holder := h.lib("us-east-1")
			l, err := holder.TryAcquire(context.Background(), DefaultLease)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			out, done := h.runWatched(ctx, append([]string{"inspect", "--emulator", "--watch"}, args...)...)
			waitFor(t, func() bool { return strings.Contains(out.String(), "us-east-1") }) // the first drawing
			if _, err := h.srv.Container(t, h.ctr).Delete(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			r := <-done
			r.expect(t, ExitError, "not set up for leases", "container \""+h.ctr+"\" does not exist")
			if strings.Contains(r.stdout, "free") {
				t.Fatalf("the lease was shown free:\n%s", r.stdout)
			}
		})
	}
}
