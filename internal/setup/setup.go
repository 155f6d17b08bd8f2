// Package setup is the extra configuration a deployment asks of a school admin before the school
// is active (onboarding scenario 2): the fields declared in SETUP_FIELDS_FILE, and the validation
// of the answers.
package setup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/i18n"
)

// Field types.
const (
	TypeText     = "text"
	TypeEmail    = "email"
	TypeURL      = "url"
	TypeSelect   = "select"
	TypeCheckbox = "checkbox"
)

// maxAnswer bounds every answer; MaxLength may lower it.
const maxAnswer = 2000

// Field is one question of the setup form.
type Field struct {
	Name     string   `json:"name"`
	Label    string   `json:"label"`
	Type     string   `json:"type"` // text (default), email, url, select, checkbox
	Required bool     `json:"required"`
	Pattern  string   `json:"pattern"` // a Go regular expression the whole answer must match (text)
	Options  []Option `json:"options"` // the choices of a select
	Help     string   `json:"help"`
	// PatternHelp says in words what Pattern wants, for the error message.
	PatternHelp string `json:"patternHelp"`
	MaxLength   int    `json:"maxLength"`
	// Translations are the field's words in other languages, by language ("de"): the setup page
	// shows them to a school admin who reads that language; what a translation leaves out is
	// shown as written above.
	Translations map[string]Translation `json:"translations"`

	re *regexp.Regexp
}

// Translation is a field's words in one language; Options maps an option's value to its label.
type Translation struct {
	Label       string            `json:"label"`
	Help        string            `json:"help"`
	PatternHelp string            `json:"patternHelp"`
	Options     map[string]string `json:"options"`
}

// In returns the field with its words in lang (a language such as "de" or "de-AT": its first
// part picks the translation); the field as written when it has none.
func (f Field) In(lang string) Field {
	base, _, _ := strings.Cut(strings.ToLower(lang), "-")
	tr, ok := f.Translations[base]
	if !ok {
		return f
	}
	if tr.Label != "" {
		f.Label = tr.Label
	}
	if tr.Help != "" {
		f.Help = tr.Help
	}
	if tr.PatternHelp != "" {
		f.PatternHelp = tr.PatternHelp
	}
	if len(tr.Options) > 0 {
		opts := make([]Option, len(f.Options))
		for i, o := range f.Options {
			if l, ok := tr.Options[o.Value]; ok && l != "" {
				o.Label = l
			}
			opts[i] = o
		}
		f.Options = opts
	}
	return f
}

// validLanguage is a translation's key: a language as "de" or "pt".
var validLanguage = regexp.MustCompile(`^[a-z]{2,3}$`)

// Option is one choice of a select. In the file it is {"value": "...", "label": "..."} or just
// the value as a string.
type Option struct {
	Value string `json:"value"`
	Label string `json:"label"`
}

// UnmarshalJSON accepts an option as a string or an object.
func (o *Option) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err == nil {
		*o = Option{Value: v, Label: v}
		return nil
	}
	type plain Option
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return errors.New("an option is a string or {\"value\": ..., \"label\": ...}")
	}
	if p.Label == "" {
		p.Label = p.Value
	}
	*o = Option(p)
	return nil
}

// Fields is the deployment's setup form. A nil Fields asks nothing: schools are complete.
type Fields []Field

// validName keeps field names usable as form keys and store keys.
var validName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$`)

// Load reads and checks SETUP_FIELDS_FILE.
func Load(path string) (Fields, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("setup fields: %w", err)
	}
	return Parse(b)
}

// Parse checks a JSON list of fields, such as
// [{"name": "district", "label": "District", "type": "text", "required": true}].
func Parse(b []byte) (Fields, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var fields Fields
	err := dec.Decode(&fields)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("data after the list")
		}
	}
	if err != nil || fields == nil {
		msg := `not a JSON list of fields, such as [{"name": "district", "label": "District", "type": "text"}]`
		if err != nil && strings.Contains(err.Error(), "unknown field") {
			msg += ": " + err.Error()
		}
		return nil, errors.New(msg)
	}
	seen := map[string]bool{}
	for i := range fields {
		f := &fields[i]
		if f.Name == "" {
			return nil, fmt.Errorf("field %d has no name", i+1)
		}
		if !validName.MatchString(f.Name) {
			return nil, fmt.Errorf("field %d: name %q must start with a letter and hold only letters, digits, '_', '.' or '-' (at most 64)", i+1, f.Name)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("field name %q appears twice", f.Name)
		}
		seen[f.Name] = true
		if f.Label == "" {
			f.Label = f.Name
		}
		switch f.Type {
		case "":
			f.Type = TypeText
		case TypeText, TypeEmail, TypeURL, TypeCheckbox:
		case TypeSelect:
			if len(f.Options) == 0 {
				return nil, fmt.Errorf("field %q: a select needs options", f.Name)
			}
		default:
			return nil, fmt.Errorf("field %q: type %q is not one of text, email, url, select, checkbox", f.Name, f.Type)
		}
		if len(f.Options) > 0 && f.Type != TypeSelect {
			return nil, fmt.Errorf("field %q: only a select has options", f.Name)
		}
		if f.Pattern != "" {
			// Checked on its own first: wrapped in ^(?:...)$ right away, a pattern such as
			// "[0-9]{4})|(x" would close the group and escape the anchors.
			if _, err := syntax.Parse(f.Pattern, syntax.Perl); err != nil {
				return nil, fmt.Errorf("field %q: pattern is not a valid regular expression: %v", f.Name, err)
			}
			re, err := regexp.Compile(`^(?:` + f.Pattern + `)$`)
			if err != nil {
				return nil, fmt.Errorf("field %q: pattern is not a valid regular expression: %v", f.Name, err)
			}
			f.re = re
		}
		for lang, tr := range f.Translations {
			if !validLanguage.MatchString(lang) {
				return nil, fmt.Errorf("field %q: translation %q: the key must be a language such as \"de\"", f.Name, lang)
			}
			for v := range tr.Options {
				if !slices.ContainsFunc(f.Options, func(o Option) bool { return o.Value == v }) {
					return nil, fmt.Errorf("field %q: translation %q names option %q, which the field does not have", f.Name, lang, v)
				}
			}
		}
		if f.MaxLength <= 0 || f.MaxLength > maxAnswer {
			f.MaxLength = maxAnswer
		}
	}
	return fields, nil
}

// Validate checks submitted answers (the form's values, keyed by field name) and returns the
// answers to store, normalised, and a message per field that is wrong (a catalog message: the
// page shows it in the reader's language). Names not in the form are ignored. A checkbox's
// answer is "true" or "false".
func (fs Fields) Validate(values url.Values) (answers map[string]string, problems map[string]i18n.Text) {
	answers, problems = map[string]string{}, map[string]i18n.Text{}
	for _, f := range fs {
		v := strings.TrimSpace(values.Get(f.Name))
		if msg := f.check(v); !msg.IsZero() {
			problems[f.Name] = msg
			continue
		}
		if f.Type == TypeCheckbox {
			v = fmt.Sprint(v != "")
		}
		answers[f.Name] = v
	}
	return answers, problems
}

func (f Field) check(v string) i18n.Text {
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return i18n.T("problem.bad_characters")
	}
	if f.Type == TypeCheckbox {
		if f.Required && v == "" {
			return i18n.T("problem.must_tick")
		}
		return i18n.Text{}
	}
	if v == "" {
		if f.Required {
			return i18n.T("problem.required")
		}
		return i18n.Text{}
	}
	if utf8.RuneCountInString(v) > f.MaxLength {
		return i18n.T("problem.too_long", "Max", f.MaxLength)
	}
	switch f.Type {
	case TypeEmail:
		if a, err := mail.ParseAddress(v); err != nil || a.Address != v || a.Name != "" {
			return i18n.T("problem.email")
		}
	case TypeURL:
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return i18n.T("problem.url")
		}
	case TypeSelect:
		for _, o := range f.Options {
			if o.Value == v {
				return i18n.Text{}
			}
		}
		return i18n.T("problem.choice")
	}
	if f.re != nil && !f.re.MatchString(v) {
		if f.PatternHelp != "" {
			// The deployment's own words for the pattern (SETUP_FIELDS_FILE's patternHelp).
			return i18n.T("problem.pattern_help", "Help", f.PatternHelp)
		}
		return i18n.T("problem.pattern")
	}
	return i18n.Text{}
}

// Complete reports whether stored answers complete the setup: every required field has a valid
// answer. It is the store's SetupCheck.
func (fs Fields) Complete(answers map[string]string) bool {
	for _, f := range fs {
		v := answers[f.Name]
		if f.Type == TypeCheckbox {
			v = map[string]string{"true": "on"}[v]
		}
		if !f.check(v).IsZero() {
			return false
		}
		if f.Required && v == "" {
			return false
		}
	}
	return true
}
