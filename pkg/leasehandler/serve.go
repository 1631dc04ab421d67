package leasehandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// WriteFunctionsEnv, when set in its environment, makes Serve write the function folders of its jobs into the
// folder it names (NAME/function.json for each job, and LeaseStatus/function.json), print their names and
// return, instead of serving: cosmoslease package and deploy build the handler for the machine they run on and
// run it so, and put what it wrote beside the handler in the zip. Nobody writes a function.json by hand.
const WriteFunctionsEnv = "COSMOSLEASE_WRITE_FUNCTIONS"

// Serve runs the custom handler for the Azure Functions host: one timer function per job (the jobs given, then
// the command jobs that the app settings LeaseJobs__NAME__Command configure), and LeaseStatus, which reports
// every job. It listens on FUNCTIONS_CUSTOMHANDLER_PORT, which the host sets, and returns nil when asked to
// stop (SIGINT, SIGTERM: func start; the host itself ends a handler with SIGKILL).
//
// It returns an error at once for jobs that no setting can fix (a missing name or Work, an invalid or repeated
// name) and when the host's port is not set. Settings that are wrong do not stop it: the host would only start
// it again. A problem with the settings every job shares fails every invocation; one with a job's own settings
// fails that job's invocations, each with one line saying what is wrong, and the other jobs run on. The
// problems are also written to stderr at start, and LeaseStatus lists them.
//
// Serve exports the library's metrics and spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or a signal's
// own endpoint) is set, installing them as the global providers.
func Serve(jobs ...Job) error {
	if err := checkGoJobs(jobs); err != nil {
		return err
	}
	e := environ(os.Environ())
	specs, problems := listJobs(jobs, e)
	if dir := e.get(WriteFunctionsEnv); dir != "" {
		return writeFunctions(dir, specs, problems, os.Stdout)
	}
	port := e.get("FUNCTIONS_CUSTOMHANDLER_PORT")
	if port == "" {
		return errors.New("FUNCTIONS_CUSTOMHANDLER_PORT is not set; the Azure Functions host sets it when it starts the handler (run it with 'func start')")
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app, err := loadApp(e)
	h := newHandler(app, err, specs, e, log)
	// Keep serving whatever is wrong: the host would restart a handler that exits, and each reason belongs to
	// the invocations it fails.
	for _, p := range append(problems, h.problems()...) {
		fmt.Fprintln(os.Stderr, "leasehandler: "+p)
	}
	tel := startTelemetry(log)
	srv := &http.Server{Handler: flushEach(h.mux(), tel, log), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return fmt.Errorf("cannot listen on 127.0.0.1:%s: %v", port, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		h.release()
		_ = tel.Shutdown(shutdown)
	}()
	log.Info("leasehandler listening", "addr", ln.Addr().String(), "jobs", h.jobNames())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}
