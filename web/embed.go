// Package web holds the server-rendered pages and static files, embedded so the binary runs from
// any working directory.
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

// Templates parses every page template. Each page defines "title" and "content" and is rendered
// through "layout".
func Templates() *template.Template {
	return template.Must(template.New("").Funcs(template.FuncMap{"roleName": RoleName}).ParseFS(templateFS, "templates/*.html"))
}

// RoleName is a OneRoster role as the pages name it.
func RoleName(role string) string {
	switch role {
	case "teacher":
		return "Teacher"
	case "student":
		return "Student"
	case "administrator":
		return "School administrator"
	case "parent", "guardian":
		return "Parent"
	case "aide":
		return "Staff"
	case "":
		return "Unknown"
	}
	return role
}

// Static is the tree served under /static/.
func Static() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
