// Command leasehandler is an Azure Functions custom handler. The same app runs in several regions; each
// region's timer fires, and only the region holding the lease in Cosmos DB does the work, once per occurrence.
//
// The host starts it with FUNCTIONS_CUSTOMHANDLER_PORT set and calls one route per function folder
// (/LeaseTimer, /LeaseStatus). Settings come from app settings: see settings.go and docs/scheduled-work.md.
package main

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

func main() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	port := os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT")
	if port == "" {
		fmt.Fprintln(os.Stderr, "leasehandler: FUNCTIONS_CUSTOMHANDLER_PORT is not set; the Azure Functions host sets it when it starts the handler (run it with 'func start')")
		os.Exit(2)
	}
	s, err := loadSettings(os.Getenv)
	if err != nil {
		// Keep serving: the host would restart a handler that exits, and the reason belongs to each invocation,
		// which fails with it.
		fmt.Fprintf(os.Stderr, "leasehandler: the settings are not usable, so every invocation fails until they are fixed: %v\n", err)
	}
	h := newHandler(s, err, Work, log)
	tel := startTelemetry(log)
	srv := &http.Server{Handler: flushEach(h.mux(), tel, log), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "leasehandler: cannot listen on 127.0.0.1:%s: %v\n", port, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		h.release()
		_ = tel.Shutdown(shutdown)
	}()
	log.Info("leasehandler listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "leasehandler: %v\n", err)
		os.Exit(1)
	}
}
