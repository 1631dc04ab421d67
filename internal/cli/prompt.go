package cli

import (
	"errors"
	"io"
	"os"
	"strings"

	"github.com/AlecAivazis/survey/v2"
)

// Prompter asks the user. survey is archived upstream; it is used only behind this interface, and only when
// stdin and stderr are terminals (survey with a non-terminal stdin returns io.EOF and eats the input).
//
// Input and Secret take the check that a flag's value would get (nil for none): an answer that fails it is
// refused with the check's message and the question is asked again, so a typo never ends the whole flow. The
// answer returned is trimmed and never empty.
type Prompter interface {
	Input(message, help, def string, check func(string) error) (string, error)
	Secret(message, help string, check func(string) error) (string, error)
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

// validator turns a check into survey's validator: required, trimmed, then the check.
func validator(check func(string) error) survey.Validator {
	return func(ans any) error {
		s, _ := ans.(string)
		s = strings.TrimSpace(s)
		if s == "" {
			return errors.New("a value is required")
		}
		if check != nil {
			return check(s)
		}
		return nil
	}
}

func (p SurveyPrompter) Input(message, help, def string, check func(string) error) (string, error) {
	var out string
	err := survey.AskOne(&survey.Input{Message: message, Help: help, Default: def}, &out, p.opts(), survey.WithValidator(validator(check)))
	return strings.TrimSpace(out), err
}

func (p SurveyPrompter) Secret(message, help string, check func(string) error) (string, error) {
	var out string
	err := survey.AskOne(&survey.Password{Message: message, Help: help}, &out, p.opts(), survey.WithValidator(validator(check)))
	return strings.TrimSpace(out), err
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
