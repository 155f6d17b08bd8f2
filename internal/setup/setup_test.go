package setup_test

import (
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/web"
)

// english renders the problems Validate returns (catalog messages) as a reader of English sees them.
var english = i18n.English(web.Locales())

// exported drops Field's compiled pattern so fields compare with reflect.DeepEqual.
func exported(fs setup.Fields) []setup.Field {
	out := make([]setup.Field, len(fs))
	for i, f := range fs {
		out[i] = setup.Field{Name: f.Name, Label: f.Label, Type: f.Type, Required: f.Required, Pattern: f.Pattern,
			Options: f.Options, Help: f.Help, PatternHelp: f.PatternHelp, MaxLength: f.MaxLength}
	}
	return out
}

func mustParse(t *testing.T, js string) setup.Fields {
	t.Helper()
	fs, err := setup.Parse([]byte(js))
	if err != nil {
		t.Fatalf("Parse(%s) = %v", js, err)
	}
	return fs
}

func TestParse(t *testing.T) {
	t.Parallel()
	opt := func(v, l string) setup.Option { return setup.Option{Value: v, Label: l} }
	tests := []struct {
		name    string
		json    string
		want    []setup.Field
		wantErr string // in the error; "" for no error
	}{
		{name: "every type", json: `[
			{"name": "district", "label": "District", "type": "text", "required": true, "help": "as on the letterhead"},
			{"name": "office", "type": "email"},
			{"name": "site", "type": "url"},
			{"name": "state", "type": "select", "options": ["W", "NÖ"]},
			{"name": "terms", "label": "I accept", "type": "checkbox", "required": true},
			{"name": "note"}]`,
			want: []setup.Field{
				{Name: "district", Label: "District", Type: "text", Required: true, Help: "as on the letterhead", MaxLength: 2000},
				{Name: "office", Label: "office", Type: "email", MaxLength: 2000},
				{Name: "site", Label: "site", Type: "url", MaxLength: 2000},
				{Name: "state", Label: "state", Type: "select", Options: []setup.Option{opt("W", "W"), opt("NÖ", "NÖ")}, MaxLength: 2000},
				{Name: "terms", Label: "I accept", Type: "checkbox", Required: true, MaxLength: 2000},
				{Name: "note", Label: "note", Type: "text", MaxLength: 2000},
			}},
		{name: "options as objects, label defaults to value", json: `[{"name": "s", "type": "select",
			"options": [{"value": "w", "label": "Wien"}, {"value": "noe"}, "stmk", {"label": "only a label"}]}]`,
			want: []setup.Field{{Name: "s", Label: "s", Type: "select", MaxLength: 2000,
				Options: []setup.Option{opt("w", "Wien"), opt("noe", "noe"), opt("stmk", "stmk"), opt("", "only a label")}}}},
		{name: "pattern and its help kept", json: `[{"name": "code", "pattern": "[0-9]{4}", "patternHelp": "four digits", "maxLength": 4}]`,
			want: []setup.Field{{Name: "code", Label: "code", Type: "text", Pattern: "[0-9]{4}", PatternHelp: "four digits", MaxLength: 4}}},
		{name: "maxLength bounds", json: `[{"name": "a", "maxLength": 0}, {"name": "b", "maxLength": -3}, {"name": "c", "maxLength": 5000},
			{"name": "d", "maxLength": 2000}, {"name": "e", "maxLength": 1}]`,
			want: []setup.Field{{Name: "a", Label: "a", Type: "text", MaxLength: 2000}, {Name: "b", Label: "b", Type: "text", MaxLength: 2000},
				{Name: "c", Label: "c", Type: "text", MaxLength: 2000}, {Name: "d", Label: "d", Type: "text", MaxLength: 2000},
				{Name: "e", Label: "e", Type: "text", MaxLength: 1}}},
		{name: "name characters", json: `[{"name": "a"}, {"name": "Z9_.-x"}, {"name": "` + "a" + strings.Repeat("b", 63) + `"}]`,
			want: []setup.Field{{Name: "a", Label: "a", Type: "text", MaxLength: 2000}, {Name: "Z9_.-x", Label: "Z9_.-x", Type: "text", MaxLength: 2000},
				{Name: "a" + strings.Repeat("b", 63), Label: "a" + strings.Repeat("b", 63), Type: "text", MaxLength: 2000}}},
		{name: "empty list", json: `[]`, want: []setup.Field{}},
		{name: "surrounding whitespace", json: " \n[{\"name\": \"a\"}]\n", want: []setup.Field{{Name: "a", Label: "a", Type: "text", MaxLength: 2000}}},

		{name: "select without options", json: `[{"name": "s", "type": "select"}]`, wantErr: `field "s": a select needs options`},
		{name: "select with an empty options list", json: `[{"name": "s", "type": "select", "options": []}]`, wantErr: "a select needs options"},
		{name: "options on a text field", json: `[{"name": "t", "options": ["a"]}]`, wantErr: `field "t": only a select has options`},
		{name: "options on a checkbox", json: `[{"name": "c", "type": "checkbox", "options": ["a"]}]`, wantErr: "only a select has options"},
		{name: "option of the wrong type", json: `[{"name": "s", "type": "select", "options": [1]}]`, wantErr: "not a JSON list of fields"},
		{name: "bad pattern", json: `[{"name": "p", "pattern": "[0-9"}]`, wantErr: `field "p": pattern is not a valid regular expression`},
		{name: "bad pattern, unbalanced parenthesis", json: `[{"name": "p", "pattern": "(a"}]`, wantErr: "pattern is not a valid regular expression"},
		{name: "unknown type", json: `[{"name": "n", "type": "number"}]`, wantErr: `field "n": type "number" is not one of text, email, url, select, checkbox`},
		{name: "type in capitals", json: `[{"name": "n", "type": "Text"}]`, wantErr: "is not one of"},
		{name: "name starting with a digit", json: `[{"name": "1st"}]`, wantErr: "field 1: name \"1st\" must start with a letter"},
		{name: "name starting with _", json: `[{"name": "_x"}]`, wantErr: "must start with a letter"},
		{name: "name with a space", json: `[{"name": "a"}, {"name": "a b"}]`, wantErr: "field 2: name \"a b\" must start with a letter"},
		{name: "name with a slash", json: `[{"name": "a/b"}]`, wantErr: "must start with a letter"},
		{name: "name with a quote", json: `[{"name": "a\"b"}]`, wantErr: "must start with a letter"},
		{name: "name with a bracket", json: `[{"name": "a[0]"}]`, wantErr: "must start with a letter"},
		{name: "name non-ASCII", json: `[{"name": "straße"}]`, wantErr: "must start with a letter"},
		{name: "name of 65 characters", json: `[{"name": "a` + strings.Repeat("b", 64) + `"}]`, wantErr: "at most 64"},
		{name: "name with a trailing newline", json: `[{"name": "a\n"}]`, wantErr: "must start with a letter"},
		{name: "duplicate name", json: `[{"name": "a"}, {"name": "b"}, {"name": "a", "type": "email"}]`, wantErr: `field name "a" appears twice`},
		{name: "empty name", json: `[{"name": "a"}, {"name": ""}]`, wantErr: "field 2 has no name"},
		{name: "no name", json: `[{"label": "District"}]`, wantErr: "field 1 has no name"},
		{name: "unknown key", json: `[{"name": "a", "requried": true}]`, wantErr: `unknown field "requried"`},
		{name: "unknown key in the second field", json: `[{"name": "a"}, {"name": "b", "placeholder": "x"}]`, wantErr: "unknown field"},
		{name: "required as a string", json: `[{"name": "a", "required": "yes"}]`, wantErr: "not a JSON list of fields"},
		{name: "an object, not a list", json: `{"name": "a"}`, wantErr: "not a JSON list of fields"},
		{name: "null", json: `null`, wantErr: "not a JSON list of fields"},
		{name: "empty file", json: ``, wantErr: "not a JSON list of fields"},
		{name: "a list of strings", json: `["district"]`, wantErr: "not a JSON list of fields"},
		{name: "truncated", json: `[{"name": "a"`, wantErr: "not a JSON list of fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, err := setup.Parse([]byte(tt.json))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse = %v, %v; want an error with %q", fs, err, tt.wantErr)
				}
				if fs != nil {
					t.Fatalf("Parse returned fields beside the error %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if got := exported(fs); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

// An option object with a misspelt key is refused like a field with one.
func TestParseOptionUnknownKey(t *testing.T) {
	t.Parallel()
	if fs, err := setup.Parse([]byte(`[{"name": "s", "type": "select", "options": [{"value": "w", "lable": "Wien"}]}]`)); err == nil {
		t.Fatalf("Parse accepted an option with the unknown key \"lable\": %+v", exported(fs))
	}
}

// A pattern is matched against the whole answer, whatever its own parentheses do.
func TestParsePatternCannotEscapeTheAnchors(t *testing.T) {
	t.Parallel()
	fs, err := setup.Parse([]byte(`[{"name": "code", "pattern": "[0-9]{4})|(x"}]`))
	if err != nil {
		return // refused: fine
	}
	if _, problems := fs.Validate(url.Values{"code": {"1234; anything at all"}}); problems["code"].IsZero() {
		t.Fatal(`pattern "[0-9]{4})|(x" accepted "1234; anything at all"`)
	}
}

// Anything after the list is refused, not silently dropped.
func TestParseTrailingData(t *testing.T) {
	t.Parallel()
	if fs, err := setup.Parse([]byte(`[{"name": "a"}] [{"name": "b", "required": true}]`)); err == nil {
		t.Fatalf("Parse accepted trailing data: %+v", exported(fs))
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "setup.json")
	if err := os.WriteFile(p, []byte(`[{"name": "district", "required": true}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, err := setup.Load(p)
	if err != nil || len(fs) != 1 || fs[0].Name != "district" || !fs[0].Required {
		t.Fatalf("Load = %+v, %v", fs, err)
	}
	if _, err := setup.Load(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "setup fields") {
		t.Fatalf("Load of a missing file = %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"name": ""}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Load(bad); err == nil || !strings.Contains(err.Error(), "field 1 has no name") {
		t.Fatalf("Load of a bad file = %v", err)
	}
}

// form is the setup form most Validate and Complete cases use.
const form = `[
	{"name": "district", "label": "District", "required": true},
	{"name": "note"},
	{"name": "code", "pattern": "[0-9]{4}", "patternHelp": "must be four digits, such as 1010"},
	{"name": "ref", "pattern": "[A-Z]+|[0-9]+"},
	{"name": "office", "type": "email"},
	{"name": "site", "type": "url"},
	{"name": "state", "type": "select", "options": [{"value": "W", "label": "Wien"}, "NÖ"]},
	{"name": "terms", "type": "checkbox", "required": true},
	{"name": "news", "type": "checkbox"},
	{"name": "short", "maxLength": 5}
]`

func TestValidate(t *testing.T) {
	t.Parallel()
	fs := mustParse(t, form)
	// base answers every required field; each case changes it.
	base := url.Values{"district": {"Wien"}, "terms": {"on"}}
	baseAnswers := map[string]string{"district": "Wien", "note": "", "code": "", "ref": "", "office": "", "site": "", "state": "",
		"terms": "true", "news": "false", "short": ""}
	const (
		notAllowed = "This contains characters that are not allowed."
		badEmail   = "Please enter one e-mail address, such as office@school.example."
		badURL     = "Please enter a web address starting with https://."
	)
	tests := []struct {
		name     string
		set      map[string]string // form values set over base; "-" deletes
		answers  map[string]string // expected answers beyond baseAnswers (missing = as base)
		problems map[string]string
	}{
		{name: "required fields only", set: nil},
		{name: "required text missing", set: map[string]string{"district": "-"}, problems: map[string]string{"district": "Please fill this in."}},
		{name: "required text empty", set: map[string]string{"district": ""}, problems: map[string]string{"district": "Please fill this in."}},
		{name: "required text whitespace only", set: map[string]string{"district": " \t "}, problems: map[string]string{"district": "Please fill this in."}},
		{name: "whitespace trimmed", set: map[string]string{"district": "  Wien Landstraße \n", "note": "\thello "},
			answers: map[string]string{"district": "Wien Landstraße", "note": "hello"}},
		{name: "nothing at all", set: map[string]string{"district": "-", "terms": "-"},
			problems: map[string]string{"district": "Please fill this in.", "terms": "Please tick this box."}},

		{name: "pattern matches", set: map[string]string{"code": "1010"}, answers: map[string]string{"code": "1010"}},
		{name: "pattern matches after trimming", set: map[string]string{"code": " 1010 "}, answers: map[string]string{"code": "1010"}},
		{name: "pattern: too long refused", set: map[string]string{"code": "12345"}, problems: map[string]string{"code": "Expected: must be four digits, such as 1010"}},
		{name: "pattern: prefix refused", set: map[string]string{"code": "a1234"}, problems: map[string]string{"code": "Expected: must be four digits, such as 1010"}},
		{name: "pattern: suffix refused", set: map[string]string{"code": "1234a"}, problems: map[string]string{"code": "Expected: must be four digits, such as 1010"}},
		{name: "pattern: too short refused", set: map[string]string{"code": "123"}, problems: map[string]string{"code": "Expected: must be four digits, such as 1010"}},
		{name: "pattern: inner space refused", set: map[string]string{"code": "12 34"}, problems: map[string]string{"code": "Expected: must be four digits, such as 1010"}},
		{name: "pattern: optional field may stay empty", set: map[string]string{"code": ""}},
		{name: "alternation is anchored as a whole", set: map[string]string{"ref": "ABC"}, answers: map[string]string{"ref": "ABC"}},
		{name: "alternation is anchored as a whole, second branch", set: map[string]string{"ref": "123"}, answers: map[string]string{"ref": "123"}},
		{name: "alternation: mixed refused, default message", set: map[string]string{"ref": "ABC123"}, problems: map[string]string{"ref": "This does not have the expected form."}},
		{name: "alternation: trailing text refused", set: map[string]string{"ref": "123x"}, problems: map[string]string{"ref": "This does not have the expected form."}},

		{name: "email", set: map[string]string{"office": "office@school.example"}, answers: map[string]string{"office": "office@school.example"}},
		{name: "email trimmed", set: map[string]string{"office": " office@school.example "}, answers: map[string]string{"office": "office@school.example"}},
		{name: "email with a subdomain and plus", set: map[string]string{"office": "a.b+c@mail.school.example"}, answers: map[string]string{"office": "a.b+c@mail.school.example"}},
		{name: "email with a display name", set: map[string]string{"office": "Name <a@b.c>"}, problems: map[string]string{"office": badEmail}},
		{name: "email in angle brackets", set: map[string]string{"office": "<a@b.c>"}, problems: map[string]string{"office": badEmail}},
		{name: "email with a quoted display name", set: map[string]string{"office": `"Office" <a@b.c>`}, problems: map[string]string{"office": badEmail}},
		{name: "email with a comment", set: map[string]string{"office": "a@b.c (office)"}, problems: map[string]string{"office": badEmail}},
		{name: "two emails", set: map[string]string{"office": "a@b.c, d@e.f"}, problems: map[string]string{"office": badEmail}},
		{name: "email without @", set: map[string]string{"office": "office.school.example"}, problems: map[string]string{"office": badEmail}},
		{name: "email without domain", set: map[string]string{"office": "office@"}, problems: map[string]string{"office": badEmail}},
		{name: "email without local part", set: map[string]string{"office": "@school.example"}, problems: map[string]string{"office": badEmail}},
		{name: "email with a space", set: map[string]string{"office": "of fice@school.example"}, problems: map[string]string{"office": badEmail}},

		{name: "https url", set: map[string]string{"site": "https://school.example/path?q=1"}, answers: map[string]string{"site": "https://school.example/path?q=1"}},
		{name: "http url", set: map[string]string{"site": "http://school.example"}, answers: map[string]string{"site": "http://school.example"}},
		{name: "javascript url", set: map[string]string{"site": "javascript:alert(1)"}, problems: map[string]string{"site": badURL}},
		{name: "javascript url with slashes", set: map[string]string{"site": "javascript://school.example/%0aalert(1)"}, problems: map[string]string{"site": badURL}},
		{name: "data url", set: map[string]string{"site": "data:text/html,<script>alert(1)</script>"}, problems: map[string]string{"site": badURL}},
		{name: "ftp url", set: map[string]string{"site": "ftp://school.example"}, problems: map[string]string{"site": badURL}},
		{name: "url without scheme", set: map[string]string{"site": "school.example"}, problems: map[string]string{"site": badURL}},
		{name: "scheme-relative url", set: map[string]string{"site": "//school.example"}, problems: map[string]string{"site": badURL}},
		{name: "url without host", set: map[string]string{"site": "https://"}, problems: map[string]string{"site": badURL}},
		{name: "url without host, path only", set: map[string]string{"site": "https:///path"}, problems: map[string]string{"site": badURL}},
		{name: "opaque https url", set: map[string]string{"site": "https:school.example"}, problems: map[string]string{"site": badURL}},
		{name: "unparsable url", set: map[string]string{"site": "https://school example"}, problems: map[string]string{"site": badURL}},

		{name: "select value", set: map[string]string{"state": "W"}, answers: map[string]string{"state": "W"}},
		{name: "select value given as a string option", set: map[string]string{"state": "NÖ"}, answers: map[string]string{"state": "NÖ"}},
		{name: "select label is not a value", set: map[string]string{"state": "Wien"}, problems: map[string]string{"state": "Please choose one of the options."}},
		{name: "select other value", set: map[string]string{"state": "Tirol"}, problems: map[string]string{"state": "Please choose one of the options."}},
		{name: "select value in another case", set: map[string]string{"state": "w"}, problems: map[string]string{"state": "Please choose one of the options."}},

		{name: "checkbox ticked", set: map[string]string{"terms": "on", "news": "on"}, answers: map[string]string{"terms": "true", "news": "true"}},
		{name: "checkbox with any value is ticked", set: map[string]string{"news": "yes"}, answers: map[string]string{"news": "true"}},
		{name: "required checkbox not ticked", set: map[string]string{"terms": "-"}, problems: map[string]string{"terms": "Please tick this box."}},
		{name: "required checkbox empty", set: map[string]string{"terms": " "}, problems: map[string]string{"terms": "Please tick this box."}},
		{name: "checkbox with a control character", set: map[string]string{"news": "o\x00n"}, problems: map[string]string{"news": notAllowed}},

		{name: "max length in runes", set: map[string]string{"short": "äöüßé"}, answers: map[string]string{"short": "äöüßé"}},
		{name: "max length exceeded by a rune", set: map[string]string{"short": "äöüßéa"}, problems: map[string]string{"short": "Please use at most 5 characters."}},
		{name: "max length counts after trimming", set: map[string]string{"short": "  abcde  "}, answers: map[string]string{"short": "abcde"}},
		{name: "default max length 2000", set: map[string]string{"note": strings.Repeat("ü", 2000)}, answers: map[string]string{"note": strings.Repeat("ü", 2000)}},
		{name: "default max length exceeded", set: map[string]string{"note": strings.Repeat("x", 2001)}, problems: map[string]string{"note": "Please use at most 2000 characters."}},

		{name: "NUL refused", set: map[string]string{"district": "Wi\x00en"}, problems: map[string]string{"district": notAllowed}},
		{name: "inner newline refused", set: map[string]string{"note": "line 1\nline 2"}, problems: map[string]string{"note": notAllowed}},
		{name: "inner tab refused", set: map[string]string{"note": "a\tb"}, problems: map[string]string{"note": notAllowed}},
		{name: "escape refused", set: map[string]string{"note": "\x1b[31mred"}, problems: map[string]string{"note": notAllowed}},
		{name: "DEL refused", set: map[string]string{"note": "a\x7fb"}, problems: map[string]string{"note": notAllowed}},
		{name: "invalid UTF-8 refused", set: map[string]string{"note": "a\xffb"}, problems: map[string]string{"note": notAllowed}},
		{name: "control character in a pattern field", set: map[string]string{"code": "10\x0010"}, problems: map[string]string{"code": notAllowed}},
		{name: "control character in an email", set: map[string]string{"office": "a\x00@b.c"}, problems: map[string]string{"office": notAllowed}},

		{name: "unknown names ignored", set: map[string]string{"admin": "true", "district_extra": "x", "": "y"}},
		{name: "several problems at once", set: map[string]string{"district": "", "code": "x", "office": "x", "site": "x", "state": "x", "terms": "-", "short": "toolong"},
			problems: map[string]string{"district": "Please fill this in.", "code": "Expected: must be four digits, such as 1010", "office": badEmail,
				"site": badURL, "state": "Please choose one of the options.", "terms": "Please tick this box.", "short": "Please use at most 5 characters."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			values := url.Values{}
			for k, v := range base {
				values[k] = v
			}
			for k, v := range tt.set {
				if v == "-" {
					values.Del(k)
				} else {
					values.Set(k, v)
				}
			}
			answers, texts := fs.Validate(values)
			problems := map[string]string{}
			for k, v := range texts {
				problems[k] = english.MustLocalize(v)
			}
			wantAnswers := maps.Clone(baseAnswers)
			maps.Copy(wantAnswers, tt.answers)
			for name := range tt.problems {
				delete(wantAnswers, name)
			}
			wantProblems := tt.problems
			if wantProblems == nil {
				wantProblems = map[string]string{}
			}
			if !reflect.DeepEqual(problems, wantProblems) {
				t.Errorf("problems = %q, want %q", problems, wantProblems)
			}
			if !reflect.DeepEqual(answers, wantAnswers) {
				t.Errorf("answers = %q, want %q", answers, wantAnswers)
			}
			for name, a := range answers {
				if _, dup := problems[name]; dup {
					t.Errorf("%s has both an answer %q and a problem", name, a)
				}
			}
			// The answers Validate keeps complete the setup exactly when no required field had a
			// problem (an optional field with one is left out, as if unanswered).
			requiredProblem := false
			for _, f := range fs {
				if _, bad := problems[f.Name]; bad && f.Required {
					requiredProblem = true
				}
			}
			if got := fs.Complete(answers); got == requiredProblem {
				t.Errorf("Complete(answers) = %v with problems %q", got, problems)
			}
		})
	}
}

// C1 control characters (U+0080 to U+009F, e.g. U+009B, a terminal's CSI) are refused like C0
// ones, as webhook.Parse removes them from what it keeps.
func TestValidateC1Controls(t *testing.T) {
	t.Parallel()
	fs := mustParse(t, `[{"name": "note"}]`)
	for _, v := range []string{"a\u009b31mb", "a\u0085b", "a\u0080b"} {
		if _, problems := fs.Validate(url.Values{"note": {v}}); problems["note"].IsZero() {
			t.Errorf("Validate accepted %q", v)
		}
	}
}

func TestValidateNoFields(t *testing.T) {
	t.Parallel()
	var fs setup.Fields
	answers, problems := fs.Validate(url.Values{"anything": {"x"}})
	if len(answers) != 0 || len(problems) != 0 || answers == nil || problems == nil {
		t.Fatalf("Validate with no fields = %q, %q", answers, problems)
	}
}

func TestComplete(t *testing.T) {
	t.Parallel()
	fs := mustParse(t, form)
	optional := mustParse(t, `[{"name": "note"}, {"name": "news", "type": "checkbox"}]`)
	ok := map[string]string{"district": "Wien", "terms": "true"}
	with := func(changes map[string]string) map[string]string {
		m := maps.Clone(ok)
		for k, v := range changes {
			if v == "-" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name    string
		fields  setup.Fields
		answers map[string]string
		want    bool
	}{
		{name: "no fields, no answers", fields: nil, answers: nil, want: true},
		{name: "no fields, some answers", fields: nil, answers: map[string]string{"x": "y"}, want: true},
		{name: "only optional fields, no answers", fields: optional, answers: nil, want: true},
		{name: "optional checkbox stored false", fields: optional, answers: map[string]string{"news": "false"}, want: true},
		{name: "required fields answered", fields: fs, answers: ok, want: true},
		{name: "every field answered", fields: fs, answers: with(map[string]string{"note": "n", "code": "1010", "ref": "ABC", "office": "a@b.c",
			"site": "https://school.example", "state": "NÖ", "news": "false", "short": "abc"}), want: true},
		{name: "extra stored answers ignored", fields: fs, answers: with(map[string]string{"removed-field": "x"}), want: true},
		{name: "no answers", fields: fs, answers: nil, want: false},
		{name: "required text missing", fields: fs, answers: with(map[string]string{"district": "-"}), want: false},
		{name: "required text empty", fields: fs, answers: with(map[string]string{"district": ""}), want: false},
		{name: "required checkbox stored false", fields: fs, answers: with(map[string]string{"terms": "false"}), want: false},
		{name: "required checkbox missing", fields: fs, answers: with(map[string]string{"terms": "-"}), want: false},
		{name: "required checkbox stored on (not normalised)", fields: fs, answers: with(map[string]string{"terms": "on"}), want: false},
		{name: "required checkbox stored TRUE", fields: fs, answers: with(map[string]string{"terms": "TRUE"}), want: false},
		{name: "stored answer no longer matches the pattern", fields: fs, answers: with(map[string]string{"code": "12345"}), want: false},
		{name: "stored answer too long", fields: fs, answers: with(map[string]string{"short": "abcdef"}), want: false},
		{name: "stored email not valid", fields: fs, answers: with(map[string]string{"office": "Name <a@b.c>"}), want: false},
		{name: "stored url not valid", fields: fs, answers: with(map[string]string{"site": "javascript:alert(1)"}), want: false},
		{name: "stored select value no longer an option", fields: fs, answers: with(map[string]string{"state": "Tirol"}), want: false},
		{name: "stored answer with a control character", fields: fs, answers: with(map[string]string{"district": "Wi\nen"}), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.fields.Complete(tt.answers); got != tt.want {
				t.Fatalf("Complete(%q) = %v, want %v", tt.answers, got, tt.want)
			}
		})
	}
}

// A field's words in other languages: the first part of a language picks them, and what a
// translation leaves out stays as written.
func TestFieldTranslations(t *testing.T) {
	t.Parallel()
	fs := mustParse(t, `[{"name": "plan", "label": "Plan", "help": "Pick one", "type": "select", "options": ["basic", {"value": "pro", "label": "Professional"}],
		"translations": {"de": {"label": "Paket", "options": {"pro": "Profi"}}}}]`)
	de := fs[0].In("de-AT")
	if de.Label != "Paket" || de.Help != "Pick one" || de.Options[0].Label != "basic" || de.Options[1].Label != "Profi" {
		t.Errorf("German field %+v", de)
	}
	if fs[0].Options[1].Label != "Professional" {
		t.Error("In changed the field's own options")
	}
	if en := fs[0].In("en"); en.Label != "Plan" {
		t.Errorf("a language without a translation: %+v", en)
	}
	for _, bad := range []string{
		`[{"name": "a", "translations": {"German": {"label": "x"}}}]`,
		`[{"name": "a", "type": "select", "options": ["x"], "translations": {"de": {"options": {"y": "Y"}}}}]`,
		`[{"name": "a", "translations": {"de": {"lable": "x"}}}]`,
	} {
		if _, err := setup.Parse([]byte(bad)); err == nil {
			t.Errorf("Parse accepted %s", bad)
		}
	}
}
