// Package pathrule is the path pattern of the settings that name paths: the gateway's public
// paths (GATEWAY_PUBLIC_PATHS) and the internal API's write paths (INTERNAL_API_WRITE_PATHS).
// One parser and one matcher serve both, so a pattern means the same wherever it is written.
//
// A pattern is a plain path starting with "/". "*" stands for any characters within one segment
// ("/assets/*.css", "/*/health"); a pattern ending in "/" matches everything below that path,
// not the path itself ("/assets/" matches "/assets/app.css", not "/assets"); any other pattern
// matches exactly one path.
package pathrule

import (
	"fmt"
	"path"
	"strings"
)

// Pattern is one parsed pattern. The zero value matches nothing.
type Pattern struct {
	segs    []string
	subtree bool
}

// Parse reads the pattern p. Only plain paths starting with "/" are accepted: visible ASCII without ?, [, ], \, %, ; or # (what a request path could mean
// differently from how it reads, or a glob could read as a class), and clean (no empty, . or ..
// segment). rule is the setting's rule as written, for the error.
func Parse(rule, p string) (Pattern, error) {
	if !strings.HasPrefix(p, "/") {
		return Pattern{}, fmt.Errorf("%q must start with /", rule)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`?[]\%;#`, c) >= 0 {
			return Pattern{}, fmt.Errorf("%q: only plain paths with * as a wildcard are accepted (no spaces, ?, [, ], \\, %%, ; or #)", rule)
		}
	}
	segs := strings.Split(strings.TrimSuffix(p[1:], "/"), "/")
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return Pattern{}, fmt.Errorf("%q is not a clean path (an empty, . or .. segment)", rule)
		}
	}
	return Pattern{segs: segs, subtree: strings.HasSuffix(p, "/")}, nil
}

// Segments splits a path that starts with "/" into the segments Match takes.
func Segments(p string) []string { return strings.Split(p[1:], "/") }

// Match reports whether the path of segs (Segments) is the pattern's path or, for a pattern
// ending in "/", lies below it.
func (pt Pattern) Match(segs []string) bool {
	if pt.subtree {
		if len(segs) <= len(pt.segs) {
			return false
		}
	} else if len(segs) != len(pt.segs) {
		return false
	}
	for i, ps := range pt.segs {
		if ok, _ := path.Match(ps, segs[i]); !ok {
			return false
		}
	}
	return true
}
