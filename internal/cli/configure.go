package cli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/config"
	"github.com/cosmoslease/cosmoslease/internal/store/cosmosstore"
	"github.com/cosmoslease/cosmoslease/pkg/cosmoslease"
)

const (
	authIdentity = "identity"
	authKey      = "key"
)

func (a *App) configureCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "configure",
		Usage: "write appsettings.Local.json (mode 0600): account, database, container and how to authenticate",
		Description: "Asks for each value on a terminal, asking again when an answer is not valid, and then offers to check the\n" +
			"connection. Without a terminal (or with --no-input, or CI=true) every value must come from a flag or its\n" +
			"environment variable, and --check checks the connection.",
		Flags: append(commonFlags(),
			&ucli.StringFlag{Name: "auth", Usage: "identity (DefaultAzureCredential, recommended) or key (connection string)", EnvVars: []string{"COSMOSLEASE_AUTH"}},
			&ucli.StringFlag{Name: "file", Usage: "write this `FILE` instead of appsettings.Local.json"},
			&ucli.BoolFlag{Name: "check", Usage: "after writing, check the connection with one read of the lease container (--check=false: do not, and do not offer it)"},
		),
		Action: a.configure,
	}
}

// configure writes the local settings file from flags, environment and prompts, then checks the connection
// when asked to (--check, or yes to the question).
func (a *App) configure(c *ucli.Context) error {
	s, err := a.loadSettings(c)
	if err != nil {
		return err
	}
	check := c.Bool("check")
	if a.canPrompt(c) {
		if err := a.configureInteractively(c, s); err != nil {
			return err
		}
		if !c.IsSet("check") {
			if check, err = a.Prompter.Confirm("Check the connection now (one read of the lease container)?", true); err != nil {
				return err
			}
		}
	} else {
		pairs, err := configPairs(c.String("auth"), s)
		if err != nil {
			return err
		}
		if err := a.writeLocal(c, pairs); err != nil {
			return err
		}
	}
	if !check {
		return nil
	}
	return a.checkConnection(c.Context, s)
}

// checkConnection opens the lease container as every command does (which reads it once, after the SDK reads the
// account) and says whether that worked. The file is already written either way.
func (a *App) checkConnection(parent context.Context, s *settings) error {
	o := cosmoslease.Options{OwnerID: "cosmoslease-configure"} // Open requires a holder name; the check holds nothing
	s.connection(&o)
	db, ct := orDefault(o.Database, cosmoslease.DefaultDatabase), orDefault(o.Container, cosmoslease.DefaultContainer)
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	fmt.Fprintf(a.Stderr, "Checking the connection to %s/%s…\n", db, ct)
	client, err := cosmoslease.Open(ctx, o)
	if err != nil {
		if parent.Err() != nil {
			return errInterrupted
		}
		return fmt.Errorf("the settings are written, but the connection check failed: %w", explainOpenError(err))
	}
	client.Close()
	fmt.Fprintf(a.Stderr, "Connection works: container %s in database %s is reachable and usable for leases.\n", ct, db)
	return nil
}

// configPairs builds the section from values already known, or names what is missing.
func configPairs(auth string, s *settings) ([]config.Pair, error) {
	cs, _ := s.raw.Get(config.KeyConnectionString)
	ep, _ := s.raw.Get(config.KeyAccountEndpoint)
	if auth == "" {
		auth = authIdentity
		if cs != "" {
			auth = authKey
		}
	}
	db, _ := s.raw.Get(config.KeyDatabaseName)
	ct, _ := s.raw.Get(config.KeyContainerName)
	tail := []config.Pair{
		{Key: config.KeyDatabaseName, Value: orDefault(db, cosmoslease.DefaultDatabase)},
		{Key: config.KeyContainerName, Value: orDefault(ct, cosmoslease.DefaultContainer)},
	}
	switch auth {
	case authIdentity:
		if ep == "" || config.Placeholder(ep) != "" {
			return nil, usagef("configure needs the account endpoint: pass --endpoint URL or set CosmosLeasing__AccountEndpoint")
		}
		if err := cosmosstore.CheckEndpoint(ep); err != nil {
			return nil, usagef("--endpoint: %v", err)
		}
		return append([]config.Pair{{Key: config.KeyAccountEndpoint, Value: ep}}, tail...), nil
	case authKey:
		if cs == "" {
			return nil, usagef("configure --auth key needs the connection string: set CosmosLeasing__ConnectionString, or pass --connection-string")
		}
		if err := checkConnectionString(cs); err != nil {
			return nil, usagef("connection string: %v", err)
		}
		return append([]config.Pair{{Key: config.KeyConnectionString, Value: cs}}, tail...), nil
	}
	return nil, usagef("--auth %q: use identity or key", auth)
}

// checkConnectionString applies the checks that connecting applies to a connection string (its form, the
// endpoint, the key's encoding) without sending a request. Its messages never contain the key.
func checkConnectionString(cs string) error {
	st, err := cosmosstore.Open(cosmosstore.Config{ConnectionString: cs, Database: cosmoslease.DefaultDatabase, Container: cosmoslease.DefaultContainer})
	if err != nil {
		return err
	}
	st.Close()
	return nil
}

// configureInteractively asks for every value, offering what is already known as the default, writes the
// file, and updates s so the command can go on.
func (a *App) configureInteractively(c *ucli.Context, s *settings) error {
	p := a.Prompter
	auth := c.String("auth")
	if auth != authIdentity && auth != authKey {
		choice, err := p.Select("Authentication mode", "DefaultAzureCredential uses 'az login' or a managed identity and stores no secret; a connection string holds the account key.",
			[]string{"DefaultAzureCredential (recommended)", "Connection string"}, "")
		if err != nil {
			return err
		}
		auth = authIdentity
		if strings.HasPrefix(choice, "Connection") {
			auth = authKey
		}
	}
	if auth == authKey {
		cs, err := p.Secret("Connection string (AccountEndpoint=…;AccountKey=…)", "Azure Portal → Cosmos DB → Keys → Primary connection string", checkConnectionString)
		if err != nil {
			return err
		}
		s.raw.Set(config.KeyConnectionString, cs, "prompt")
	} else {
		def, _ := s.raw.Get(config.KeyAccountEndpoint)
		if config.Placeholder(def) != "" {
			def = ""
		}
		ep, err := p.Input("Azure Cosmos DB account endpoint", "such as https://myaccount.documents.azure.com:443/", def, cosmosstore.CheckEndpoint)
		if err != nil {
			return err
		}
		s.raw.Set(config.KeyAccountEndpoint, ep, "prompt")
		s.raw.Set(config.KeyConnectionString, "", "prompt")
	}
	for _, q := range []struct{ key, msg, def string }{
		{config.KeyDatabaseName, "Database name", cosmoslease.DefaultDatabase},
		{config.KeyContainerName, "Container name", cosmoslease.DefaultContainer},
	} {
		cur, _ := s.raw.Get(q.key)
		v, err := p.Input(q.msg, "", orDefault(cur, q.def), nil)
		if err != nil {
			return err
		}
		s.raw.Set(q.key, v, "prompt")
	}
	pairs, err := configPairs(auth, s)
	if err != nil {
		return err
	}
	return a.writeLocal(c, pairs)
}

// writeLocal writes the settings file and says so on stderr, warning when git would commit it.
func (a *App) writeLocal(c *ucli.Context, pairs []config.Pair) error {
	path := filepath.Join(a.Dir, config.LocalFile)
	if f := c.String("file"); c.Command.Name == "configure" && f != "" {
		path = a.path(f)
	}
	if err := config.WriteLocal(path, pairs); err != nil {
		return err
	}
	fmt.Fprintf(a.Stderr, "Wrote %s (mode 0600).\n", path)
	if tracked := gitWouldCommit(path); tracked {
		fmt.Fprintf(a.Stderr, "warning: %s is not git-ignored; add %s to .gitignore so it is never committed\n", path, filepath.Base(path))
	}
	return nil
}

// gitWouldCommit reports whether path lies in a git work tree and is not ignored there.
func gitWouldCommit(path string) bool {
	cmd := exec.Command("git", "check-ignore", "-q", filepath.Base(path))
	cmd.Dir = filepath.Dir(path)
	err := cmd.Run()
	var ee *exec.ExitError
	// 0: ignored; 1: not ignored; 128: not a repository (or no git).
	return errors.As(err, &ee) && ee.ExitCode() == 1
}
