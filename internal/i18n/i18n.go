// Package i18n holds the words of every page: message catalogs a translator edits (one TOML file
// per language under web/locales/, active.LANG.toml), the choice of a request's language, and
// dates in a language and time zone.
//
// English (active.en.toml) is the source: every message id exists there, with a description
// that tells the translator where the words appear. Another language's file may be partial: a
// message it lacks is shown in English, per message (the shipped Italian file is partial on
// purpose). Adding a language is one new file, active.LANG.toml; nothing else changes.
//
// Code never holds the words a person reads. It names a message by id, with the values the
// message uses:
//
//	i18n.T("error.not_found.heading")
//	i18n.T("console.flash.deactivated", "Tenant", tid, "Count", n) // "Count" picks the plural form
//
// and the HTTP layer renders the Text in the request's language. A value may itself be a Text
// (it is translated first), so sentences can be put together from translated parts.
//
// The catalogs use go-i18n (github.com/nicksnyder/go-i18n/v2): it is widely used and kept up,
// reads TOML files that take comments, falls back to the source language per message, and picks
// plural forms by the CLDR rules of each language; language matching is golang.org/x/text's.
package i18n

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// Source is the language every message exists in, and the last fallback.
var Source = language.English

// Text is a message to show: an id from the catalogs and the values its words use. The zero
// Text is empty.
type Text struct {
	ID   string
	Data map[string]any
}

// T builds a Text from a message id and name/value pairs ("Tenant", "1002", "Count", 3). A
// value named Count also selects the plural form.
func T(id string, kv ...any) Text {
	t := Text{ID: id}
	if len(kv) == 0 {
		return t
	}
	t.Data = make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		name, _ := kv[i].(string)
		t.Data[name] = kv[i+1]
	}
	return t
}

// Date is a day as a value of a Text: it is written in the Text's language ("9. März 2026").
type Date time.Time

// IsZero reports whether t names no message.
func (t Text) IsZero() bool { return t.ID == "" }

// Catalog is every shipped language's messages.
type Catalog struct {
	bundle  *goi18n.Bundle
	tags    []language.Tag // Source first
	matcher language.Matcher
	ids     map[language.Tag]map[string]bool
	names   map[language.Tag]string // each language in its own words (message "language.name")
}

// Load reads every active.LANG.toml of fsys (the directory's top level).
func Load(fsys fs.FS) (*Catalog, error) {
	c := &Catalog{bundle: goi18n.NewBundle(Source), ids: map[language.Tag]map[string]bool{}, names: map[language.Tag]string{}}
	c.bundle.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	files, err := fs.Glob(fsys, "active.*.toml")
	if err != nil {
		return nil, fmt.Errorf("catalogs: %w", err)
	}
	sort.Strings(files)
	for _, name := range files {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("catalog %s: %w", name, err)
		}
		mf, err := c.bundle.ParseMessageFileBytes(b, path.Base(name))
		if err != nil {
			return nil, fmt.Errorf("catalog %s: %w", name, err)
		}
		if mf.Tag == language.Und {
			return nil, fmt.Errorf("catalog %s: the file name must be active.LANG.toml", name)
		}
		ids := map[string]bool{}
		for _, m := range mf.Messages {
			if m.Other == "" && m.One == "" {
				return nil, fmt.Errorf("catalog %s: message %q has no words", name, m.ID)
			}
			ids[m.ID] = true
		}
		c.ids[mf.Tag] = ids
		if mf.Tag == Source {
			c.tags = append([]language.Tag{mf.Tag}, c.tags...)
		} else {
			c.tags = append(c.tags, mf.Tag)
		}
	}
	if len(c.tags) == 0 || c.tags[0] != Source {
		return nil, errors.New("catalogs: active.en.toml (the source language) is missing")
	}
	c.matcher = language.NewMatcher(c.tags)
	for _, tag := range c.tags {
		name, err := c.Localizer(tag).Localize(T("language.name"))
		if err != nil {
			return nil, fmt.Errorf("catalog %s: %w", tag, err)
		}
		c.names[tag] = name
	}
	return c, nil
}

// Languages are the shipped languages, the source language first.
func (c *Catalog) Languages() []language.Tag { return append([]language.Tag(nil), c.tags...) }

// Name is a language's name in its own words ("Deutsch").
func (c *Catalog) Name(tag language.Tag) string { return c.names[tag] }

// IDs are the message ids a language's file holds.
func (c *Catalog) IDs(tag language.Tag) map[string]bool { return c.ids[tag] }

// Has reports whether the source catalog holds a message id.
func (c *Catalog) Has(id string) bool { return c.ids[Source][id] }

// Supported returns the shipped language a tag names exactly by its base language ("de",
// "de-AT"), or false.
func (c *Catalog) Supported(s string) (language.Tag, bool) {
	if s == "" || len(s) > 35 {
		return language.Und, false
	}
	t, err := language.Parse(s)
	if err != nil {
		return language.Und, false
	}
	base, _ := t.Base()
	for _, tag := range c.tags {
		if b, _ := tag.Base(); b == base {
			return tag, true
		}
	}
	return language.Und, false
}

// Choose picks a request's language: the user's explicit choice (a cookie), else the best match
// of the browser's Accept-Language, else the school's language (its credentials webhook's
// "language"), else English. de-AT and de-CH match German; a browser that asks only for
// languages we do not ship does not count.
func (c *Catalog) Choose(choice, acceptLanguage, school string) language.Tag {
	if tag, ok := c.Supported(choice); ok {
		return tag
	}
	if acceptLanguage != "" && len(acceptLanguage) <= 512 {
		if prefs, _, err := language.ParseAcceptLanguage(acceptLanguage); err == nil && len(prefs) > 0 {
			_, i, conf := c.matcher.Match(prefs...)
			if conf != language.No {
				return c.tags[i]
			}
		}
	}
	if tag, ok := c.Supported(school); ok {
		return tag
	}
	return Source
}

// English renders in the source language from the catalogs of fsys (for the command line and
// tests); a catalog that does not load shows message ids.
func English(fsys fs.FS) *Localizer {
	c, err := Load(fsys)
	if err != nil {
		c = &Catalog{bundle: goi18n.NewBundle(Source), ids: map[language.Tag]map[string]bool{Source: {}}}
	}
	return c.Localizer(Source)
}

// Localizer renders Texts in one language.
type Localizer struct {
	tag language.Tag
	l   *goi18n.Localizer
}

// Localizer returns the renderer of a shipped language (the source language for another).
func (c *Catalog) Localizer(tag language.Tag) *Localizer {
	if _, ok := c.ids[tag]; !ok {
		tag = Source
	}
	return &Localizer{tag: tag, l: goi18n.NewLocalizer(c.bundle, tag.String())}
}

// Tag is the localizer's language.
func (l *Localizer) Tag() language.Tag { return l.tag }

// Localize renders t. A message this language lacks is rendered in English; an id no catalog
// holds is an error (the catalog tests keep that from shipping). Values that are Texts are
// rendered first.
func (l *Localizer) Localize(t Text) (string, error) {
	if t.ID == "" {
		return "", nil
	}
	cfg := &goi18n.LocalizeConfig{MessageID: t.ID}
	if len(t.Data) > 0 {
		data := make(map[string]any, len(t.Data))
		for k, v := range t.Data {
			switch v := v.(type) {
			case Text:
				s, err := l.Localize(v)
				if err != nil {
					return "", err
				}
				data[k] = s
			case Date:
				data[k] = l.Date(time.Time(v))
			case []Text:
				parts := make([]string, 0, len(v))
				for _, p := range v {
					s, err := l.Localize(p)
					if err != nil {
						return "", err
					}
					parts = append(parts, s)
				}
				data[k] = strings.Join(parts, " ")
			default:
				data[k] = v
			}
		}
		cfg.TemplateData = data
		if n, ok := t.Data["Count"]; ok {
			cfg.PluralCount = n
		}
	}
	s, err := l.l.Localize(cfg)
	var missing *goi18n.MessageNotFoundErr
	if errors.As(err, &missing) && s != "" {
		return s, nil // this language lacks it: English words, per message
	}
	if err != nil {
		return "", fmt.Errorf("message %q (%s): %w", t.ID, l.tag, err)
	}
	return s, nil
}

// MustLocalize renders t, or returns its id when it cannot be rendered (a missing message must
// not take a page down; the catalog tests keep it from shipping).
func (l *Localizer) MustLocalize(t Text) string {
	s, err := l.Localize(t)
	if err != nil {
		return t.ID
	}
	return s
}
