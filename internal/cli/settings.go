package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/emulator"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

// settings is the configuration in force for one command: files, then environment, then flags.
type settings struct {
	raw      config.Raw
	emulator bool
	// timings from the files or the environment; zero when not set.
	leaseDuration, renewInterval time.Duration
	autoRenew                    bool
}

// missingAccountHelp is the message for a command that needs an account and has none.
const missingAccountHelp = "no Cosmos DB account configured: run 'cosmoslease configure' (writes appsettings.Local.json), " +
	"or set CosmosLeasing__AccountEndpoint (DefaultAzureCredential) or CosmosLeasing__ConnectionString (key), " +
	"or pass --endpoint URL; --emulator uses a local emulator"

// loadSettings reads the configuration and applies the command's flags.
func (a *App) loadSettings(c *ucli.Context) (*settings, error) {
	raw, err := config.Load(a.Dir, a.path(c.String("config")), a.Getenv)
	if err != nil {
		return nil, err
	}
	for flag, key := range map[string]string{"endpoint": config.KeyAccountEndpoint, "connection-string": config.KeyConnectionString,
		"database": config.KeyDatabaseName, "container": config.KeyContainerName} {
		if c.IsSet(flag) {
			raw.Set(key, c.String(flag), "--"+flag)
		}
	}
	s := &settings{raw: raw, emulator: c.Bool("emulator"), autoRenew: true}
	if s.emulator {
		ep, src := raw.Get(config.KeyAccountEndpoint)
		if src != "--endpoint" {
			ep = a.Getenv("COSMOSLEASE_EMULATOR_ENDPOINT")
			if ep == "" {
				ep = emulator.DefaultEndpoint
			}
		}
		if err := cosmosstore.CheckEndpoint(ep); err != nil {
			return nil, usagef("--emulator endpoint: %v", err)
		}
		s.raw.Set(config.KeyAccountEndpoint, ep, "--emulator")
		s.raw.Set(config.KeyConnectionString, "", "--emulator")
	}
	for key, into := range map[string]*time.Duration{config.KeyDefaultLeaseDuration: &s.leaseDuration, config.KeyAutoRenewInterval: &s.renewInterval} {
		if v, src := raw.Get(key); v != "" {
			d, err := config.ParseDuration(v)
			if err != nil {
				return nil, fmt.Errorf("%w: %s in %s: %v", config.ErrInvalid, key, src, err)
			}
			*into = d
		}
	}
	if v, src := raw.Get(config.KeyAutoRenew); v != "" {
		b, err := config.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s in %s: %v", config.ErrInvalid, config.KeyAutoRenew, src, err)
		}
		s.autoRenew = b
	}
	return s, nil
}

func (a *App) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(a.Dir, p)
}

// accountProblem says why the settings cannot reach an account, or returns nil.
func (s *settings) accountProblem() error {
	if s.emulator {
		return nil
	}
	cs, _ := s.raw.Get(config.KeyConnectionString)
	ep, src := s.raw.Get(config.KeyAccountEndpoint)
	if cs != "" {
		return nil
	}
	if ep == "" {
		return usagef("%s", missingAccountHelp)
	}
	if ph := config.Placeholder(ep); ph != "" {
		return usagef("AccountEndpoint in %s is still the template placeholder %s: run 'cosmoslease configure' to write appsettings.Local.json, or set CosmosLeasing__AccountEndpoint", src, ph)
	}
	if err := cosmosstore.CheckEndpoint(ep); err != nil {
		return usagef("AccountEndpoint from %s: %v", src, err)
	}
	return nil
}

// connection fills the account part of lease options.
func (s *settings) connection(o *cosmoslease.Options) {
	ep, _ := s.raw.Get(config.KeyAccountEndpoint)
	if s.emulator {
		o.ConnectionString = emulator.ConnectionString(ep)
		o.Transport = emulator.Transport(ep)
	} else if cs, _ := s.raw.Get(config.KeyConnectionString); cs != "" {
		o.ConnectionString = cs
	} else {
		o.Endpoint = ep
	}
	o.Database, _ = s.raw.Get(config.KeyDatabaseName)
	o.Container, _ = s.raw.Get(config.KeyContainerName)
	o.PartitionKeyPath, _ = s.raw.Get(config.KeyPartitionKeyPath)
}

// open connects, after offering the configure prompts when no account is configured and prompting is allowed.
func (a *App) open(ctx context.Context, c *ucli.Context, s *settings, o cosmoslease.Options) (*cosmoslease.Client, error) {
	if err := s.accountProblem(); err != nil {
		if !a.canPrompt(c) {
			return nil, err
		}
		fmt.Fprintf(a.Stderr, "%s\nLet's configure it now.\n\n", err)
		if err := a.configureInteractively(c, s); err != nil {
			return nil, err
		}
	}
	s.connection(&o)
	endpoint := accountEndpoint(o)
	// On a terminal, say what the silence is once it lasts: the SDK retries an unreachable endpoint for about 10 s.
	if a.Interactive {
		slow := time.AfterFunc(2*time.Second, func() { fmt.Fprintf(a.Stderr, "connecting to %s…\n", endpoint) })
		defer slow.Stop()
	}
	if s.emulator {
		db, ct, pk := orDefault(o.Database, cosmoslease.DefaultDatabase), orDefault(o.Container, cosmoslease.DefaultContainer), orDefault(o.PartitionKeyPath, cosmoslease.DefaultPartitionKeyPath)
		if err := emulator.EnsureContainer(ctx, endpoint, db, ct, pk); err != nil {
			if ctx.Err() != nil {
				return nil, errInterrupted
			}
			if u := unreachable(endpoint, err, "is the emulator running? start it ('make server' starts a local one), or point --endpoint at it"); u != nil {
				return nil, u
			}
			return nil, fmt.Errorf("%v (is the emulator running? start it, or point --endpoint at it)", err)
		}
	}
	client, err := cosmoslease.Open(ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errInterrupted
		}
		if o.Logger != nil {
			o.Logger.Debug("open failed", "error", err)
		}
		if u := unreachable(endpoint, err, "check the endpoint, and that this machine can reach it"); u != nil {
			return nil, u
		}
		return nil, explainOpenError(err)
	}
	return client, nil
}

// accountEndpoint is the account endpoint the options connect to, for messages.
func accountEndpoint(o cosmoslease.Options) string {
	if o.Endpoint != "" {
		return o.Endpoint
	}
	for _, part := range strings.Split(o.ConnectionString, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), "AccountEndpoint") {
			return strings.TrimSpace(v)
		}
	}
	return "the account"
}

// unreachable explains, in one line naming the endpoint and the cause, an error that says the account could not be
// reached at all (no such host, connection refused, no answer, TLS); nil for any other error.
func unreachable(endpoint string, err error, hint string) error {
	cause := ""
	var dns *net.DNSError
	var op *net.OpError
	var cert *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case errors.As(err, &dns):
		cause = "no such host " + dns.Name
		if !dns.IsNotFound {
			cause = "cannot look up " + dns.Name + ": " + dns.Err
		}
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused"):
		cause = "connection refused"
	case errors.As(err, &cert):
		cause = "its TLS certificate is not trusted: " + cert.Err.Error()
	case errors.As(err, &op) && op.Timeout(), strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "context deadline exceeded"),
		strings.Contains(msg, "Client.Timeout exceeded"):
		cause = "no answer (timed out)"
	case errors.As(err, &op):
		cause = op.Err.Error()
	case strings.Contains(msg, "no such host"):
		cause = "no such host"
	default:
		return nil
	}
	return fmt.Errorf("cannot reach the Cosmos DB account at %s: %s; %s", endpoint, cause, hint)
}

// explainOpenError adds what to do when the account cannot be reached at all.
func explainOpenError(err error) error {
	if errors.Is(err, cosmoslease.ErrInvalid) || errors.Is(err, cosmoslease.ErrSetup) {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "DefaultAzureCredential") || strings.Contains(msg, "failed to acquire a token") {
		return errors.New("cannot get a Microsoft Entra ID token for the account (DefaultAzureCredential): sign in with 'az login', " +
			"run where a managed identity is available, or use key auth (CosmosLeasing__ConnectionString); --log-level debug shows each credential's error")
	}
	if strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") {
		return fmt.Errorf("%v: check the account endpoint, and that this machine can reach it", err)
	}
	return err
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
