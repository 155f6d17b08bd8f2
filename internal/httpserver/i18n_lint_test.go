package httpserver

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/web"
)

// The words a person reads live in the catalogs (web/locales), never in a template or in Go
// code. These tests keep it so: a template with English written into it fails, and every message
// id the code or a template names must be in the English catalog.

// lintAllowed are texts a template may hold as they are: symbols and punctuation between
// translated parts (letters are what the lint looks for, so these are only a reminder).
var lintAllowed = map[string]bool{}

var (
	templateAction = regexp.MustCompile(`(?s)\{\{.*?\}\}`)
	codeElement    = regexp.MustCompile(`(?is)<code>.*?</code>`)
	htmlComment    = regexp.MustCompile(`(?s)<!--.*?-->`)
	tagPattern     = regexp.MustCompile(`(?s)<[^>]*>`)
	// Attributes a person reads (or a screen reader says).
	readAttr = regexp.MustCompile(`(?i)\b(title|placeholder|aria-label|alt|data-label|aria-description)\s*=\s*"([^"]*)"`)
	// value is read on buttons only.
	buttonValue = regexp.MustCompile(`(?i)<(?:button|input[^>]*type="(?:submit|button|reset)")[^>]*\bvalue\s*=\s*"([^"]*)"`)
	word        = regexp.MustCompile(`\p{L}{2,}`)
)

// lintTemplate returns the words written into a template outside {{...}}: text between tags and
// the readable attributes. Commands inside <code> (for operators to type) are not words to
// translate.
func lintTemplate(src string) []string {
	src = templateAction.ReplaceAllString(src, "\x00")
	src = htmlComment.ReplaceAllString(src, "")
	src = codeElement.ReplaceAllString(src, "")
	var found []string
	check := func(s string) {
		s = strings.TrimSpace(strings.ReplaceAll(s, "\x00", " "))
		if s != "" && word.MatchString(s) && !lintAllowed[s] {
			found = append(found, s)
		}
	}
	for _, tag := range tagPattern.FindAllString(src, -1) {
		if strings.HasPrefix(strings.ToLower(tag), "<!doctype") {
			continue
		}
		for _, m := range readAttr.FindAllStringSubmatch(tag, -1) {
			check(m[2])
		}
		for _, m := range buttonValue.FindAllStringSubmatch(tag, -1) {
			check(m[1])
		}
	}
	for _, text := range tagPattern.Split(src, -1) {
		check(text)
	}
	return found
}

func TestTemplatesHoldNoWords(t *testing.T) {
	t.Parallel()
	// The lint itself: it finds words in text, in readable attributes and on buttons, and not in
	// actions, comments, commands or attributes no one reads.
	for src, want := range map[string]int{
		`<h1>Hello</h1>`:                                                            1,
		`<p>{{t "x"}} and more</p>`:                                                 1,
		`<img src="/a.png" alt="Our logo">`:                                         1,
		`<input placeholder="Your name">`:                                           1,
		`<td data-label="Tenant">{{.ID}}</td>`:                                      1,
		`<button value="Send">{{t "x"}}</button>`:                                   1,
		`<h1>{{t "x"}}</h1>`:                                                        0,
		`<p>{{.Name}} · {{.Email}} – {{t "y"}}</p>`:                                 0,
		`{{/* a comment with words */}}<p></p>`:                                     0,
		`<!-- words --><code>server operator add</code>`:                            0,
		`<input type="checkbox" value="on" name="terms" class="field has-problem">`: 0,
	} {
		if got := lintTemplate(src); len(got) != want {
			t.Errorf("lint of %s found %q, want %d", src, got, want)
		}
	}
	err := fs.WalkDir(web.TemplateFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(web.TemplateFS(), p)
		if err != nil {
			return err
		}
		for _, w := range lintTemplate(string(b)) {
			t.Errorf("%s holds words outside the catalogs: %q (use {{t \"id\"}} and web/locales)", p, w)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var templateID = regexp.MustCompile(`\{\{-?\s*t\s+"([^"]+)"`)

// Every message a template or the Go code names exists in the English catalog (and so in every
// complete one: internal/i18n's tests). Go code names messages with i18n.T("id", ...): a literal
// id, or a literal prefix joined to a value the code knows (role.teacher, audit.operator.added),
// and in the tables of flashes, ended counts and credentials fields.
func TestEveryNamedMessageExists(t *testing.T) {
	t.Parallel()
	cat, err := i18n.Load(web.Locales())
	if err != nil {
		t.Fatal(err)
	}
	hasPrefix := func(p string) bool {
		for id := range cat.IDs(i18n.Source) {
			if strings.HasPrefix(id, p) {
				return true
			}
		}
		return false
	}
	// Templates.
	_ = fs.WalkDir(web.TemplateFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(web.TemplateFS(), p)
		for _, m := range templateID.FindAllStringSubmatch(string(b), -1) {
			if !cat.Has(m[1]) {
				t.Errorf("%s names message %q, which active.en.toml does not have", p, m[1])
			}
		}
		return nil
	})
	// Go: every i18n.T call of the packages that build pages and messages.
	calls := 0
	for _, dir := range []string{".", "../onboard", "../setup"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "T" {
					return true
				}
				if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "i18n" {
					return true
				}
				calls++
				switch a := call.Args[0].(type) {
				case *ast.BasicLit:
					id, _ := strconv.Unquote(a.Value)
					if !cat.Has(id) {
						t.Errorf("%s: i18n.T(%q): no such message in active.en.toml", file, id)
					}
				case *ast.BinaryExpr:
					if _, ok := a.X.(*ast.Ident); ok {
						return true // templateFuncs' named prefixes (role., state., source.): checked below
					}
					prefix := ""
					if lit, ok := a.X.(*ast.BasicLit); ok {
						prefix, _ = strconv.Unquote(lit.Value)
					}
					if !hasPrefix(prefix) || prefix == "" {
						t.Errorf("%s: i18n.T with an id that starts with no catalog's prefix", file)
					}
				case *ast.SelectorExpr:
					// An id from a table (flashKinds): checked below.
				case *ast.Ident:
					// A variable holding an id chosen from literals (limits.go's msg): checked by
					// the tests of that page.
				default:
					t.Errorf("%s: i18n.T with an id the test cannot check: %T", file, a)
				}
				return true
			})
		}
	}
	if calls < 100 {
		t.Errorf("found only %d i18n.T calls: the scan is broken", calls)
	}
	// The tables.
	for kind, k := range flashKinds {
		if !cat.Has(k.id) {
			t.Errorf("flash %s: no message %q", kind, k.id)
		}
	}
	for table, id := range endedCounts {
		if !cat.Has(id) {
			t.Errorf("ended %s: no message %q", table, id)
		}
	}
	for _, f := range credFields("x", true, nil, nil) {
		if !cat.Has(f.Label) {
			t.Errorf("field %s: no message %q", f.Name, f.Label)
		}
	}
	for _, prefix := range []string{"role.", "state.", "source.", "audit.operator."} {
		if !hasPrefix(prefix) {
			t.Errorf("no message starts with %q", prefix)
		}
	}
	for _, s := range []string{"active", "pending_setup", "deactivated", "deleted"} {
		if !cat.Has("state." + s) {
			t.Errorf("no name for the state %s", s)
		}
	}
	for _, a := range []string{"added", "password_reset", "unlocked"} {
		if !cat.Has("audit.operator." + a) {
			t.Errorf("no sentence for operator.%s", a)
		}
	}
	// The events console names each lifecycle event's type and delivery status.
	for _, typ := range eventTypes {
		if !cat.Has("event_type." + typ) {
			t.Errorf("no name for the event type %s", typ)
		}
	}
	for _, st := range []string{store.EventPending, store.EventDelivered, store.EventFailed} {
		if !cat.Has("event_status." + st) {
			t.Errorf("no name for the event status %s", st)
		}
	}
	for _, m := range []string{"limit.launch.network", "limit.launch.school"} {
		if !cat.Has(m) {
			t.Errorf("no message %s", m)
		}
	}
}
