// Package web holds the server-rendered pages, their words and static files, embedded so the
// binary runs from any working directory.
package web

import (
	"embed"
	"html/template"
	"io/fs"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

//go:embed locales/*.toml
var localeFS embed.FS

// Templates parses every page template with funcs (the words of one language: see
// internal/httpserver). Each page is a "content" block rendered through "layout".
func Templates(funcs template.FuncMap) (*template.Template, error) {
	return template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
}

// TemplateFS is the templates' source, for the template lint.
func TemplateFS() fs.FS { return sub(templateFS, "templates") }

// Locales holds the message catalogs, active.LANG.toml (internal/i18n reads them).
func Locales() fs.FS { return sub(localeFS, "locales") }

// Static is the tree served under /static/.
func Static() fs.FS { return sub(staticFS, "static") }

func sub(fsys fs.FS, dir string) fs.FS {
	s, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return s
}
