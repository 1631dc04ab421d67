package cli

import (
	"errors"
	"io"
	"os"

	"github.com/AlecAivazis/survey/v2"
)

// Prompter asks the user. survey is archived upstream; it is used only behind this interface, and only when
// stdin and stderr are terminals (survey with a non-terminal stdin returns io.EOF and eats the input).
type Prompter interface {
	Input(message, help, def string) (string, error)
	Secret(message, help string) (string, error)
	Select(message, help string, options []string, def string) (string, error)
	MultiSelect(message, help string, options, defaults []string) ([]string, error)
	Confirm(message string, def bool) (bool, error)
}

// SurveyPrompter asks on a terminal: questions go to stderr, so stdout stays data.
type SurveyPrompter struct {
	In  *os.File
	Out *os.File
	Err io.Writer
}

func (p SurveyPrompter) opts() survey.AskOpt {
	return survey.WithStdio(p.In, p.Out, p.Err)
}

func required(ans any) error {
	if s, ok := ans.(string); ok && s == "" {
		return errors.New("a value is required")
	}
	return nil
}

func (p SurveyPrompter) Input(message, help, def string) (string, error) {
	var out string
	err := survey.AskOne(&survey.Input{Message: message, Help: help, Default: def}, &out, p.opts(), survey.WithValidator(required))
	return out, err
}

func (p SurveyPrompter) Secret(message, help string) (string, error) {
	var out string
	err := survey.AskOne(&survey.Password{Message: message, Help: help}, &out, p.opts(), survey.WithValidator(required))
	return out, err
}

func (p SurveyPrompter) Select(message, help string, options []string, def string) (string, error) {
	var out string
	q := &survey.Select{Message: message, Help: help, Options: options}
	if def != "" {
		q.Default = def
	}
	err := survey.AskOne(q, &out, p.opts())
	return out, err
}

func (p SurveyPrompter) MultiSelect(message, help string, options, defaults []string) ([]string, error) {
	var out []string
	q := &survey.MultiSelect{Message: message, Help: help, Options: options}
	if len(defaults) > 0 {
		q.Default = defaults
	}
	err := survey.AskOne(q, &out, p.opts())
	return out, err
}

func (p SurveyPrompter) Confirm(message string, def bool) (bool, error) {
	var out bool
	err := survey.AskOne(&survey.Confirm{Message: message, Default: def}, &out, p.opts())
	return out, err
}
