package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cosmoslease/cosmoslease/internal/az"
	"github.com/cosmoslease/cosmoslease/internal/config"
)

func (a *App) teardownCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "teardown",
		Usage: "delete what setup created (its resource group) and the local configuration file",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation", EnvVars: []string{"COSMOSLEASE_YES"}},
			&ucli.BoolFlag{Name: "no-input", Usage: "never prompt", EnvVars: []string{"COSMOSLEASE_NO_INPUT"}},
		},
		Action: a.teardown,
	}
}

func (a *App) teardown(c *ucli.Context) error {
	path := filepath.Join(a.Dir, config.LocalFile)
	rec, err := config.ReadSection(path, setupSection)
	if err != nil {
		return err
	}
	if rec == nil {
		return usagef("%s records no setup to tear down (run teardown where setup wrote it; resources made otherwise are yours to delete)", path)
	}
	ask := a.canPrompt(c)
	if !ask && !c.Bool("yes") {
		return usagef("teardown deletes what setup made and %s: pass --yes to confirm without a prompt", config.LocalFile)
	}
	confirm := func(msg string) error {
		if c.Bool("yes") {
			return nil
		}
		ok, err := a.Prompter.Confirm(msg, false)
		if err != nil {
			return err
		}
		if !ok {
			return withCode(ExitOK, errors.New("nothing deleted"))
		}
		return nil
	}
	if rec["Mode"] == "azure" {
		if a.Az == nil {
			a.Az = az.Exec{}
		}
		group, sub, env := rec["ResourceGroup"], rec["Subscription"], rec["EnvironmentName"]
		ctx := c.Context
		out, err := a.Az.Run(ctx, "group", "show", "--name", group, "--subscription", sub, "--output", "json")
		var azErr *az.Error
		switch {
		case errors.As(err, &azErr) && containsAny(azErr.Message, "could not be found", "ResourceGroupNotFound"):
			fmt.Fprintf(a.Stderr, "Resource group %s is already gone.\n", group)
		case err != nil:
			return err
		default:
			var g struct {
				Tags map[string]string `json:"tags"`
			}
			_ = json.Unmarshal(out, &g)
			if g.Tags["cosmoslease-env"] != env {
				return fmt.Errorf("resource group %s is not tagged cosmoslease-env=%s, so setup did not make it; delete it yourself if you mean to", group, env)
			}
			list, err := a.Az.Run(ctx, "resource", "list", "--resource-group", group, "--subscription", sub, "--output", "json")
			if err != nil {
				return err
			}
			var resources []struct{ Name, Type string }
			_ = json.Unmarshal(list, &resources)
			fmt.Fprintf(a.Stderr, "Teardown deletes resource group %s (subscription %s) with its %d resources:\n", group, sub, len(resources))
			for _, r := range resources {
				fmt.Fprintf(a.Stderr, "  %s  %s\n", r.Type, r.Name)
			}
			fmt.Fprintf(a.Stderr, "and %s.\n\n", path)
			if err := confirm("Delete them? This cannot be undone."); err != nil {
				return err
			}
			if _, err := a.withSpinner("Deleting "+group, func() ([]byte, error) {
				return a.Az.Run(ctx, "group", "delete", "--name", group, "--subscription", sub, "--yes")
			}); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "Deleted resource group %s.\n", group)
		}
	} else if err := confirm(fmt.Sprintf("Delete %s?", path)); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	fmt.Fprintf(a.Stdout, "Removed %s.\n", path)
	return nil
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
