package internalapi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/untis-partner/server/internal/pathrule"
)

// externRoot is where the platform's REST "extern" API lives below UNTIS_API_URL; write rules
// name paths below it.
const externRoot = "/WebUntis/api/rest/extern/"

// oneRosterRoot is OneRoster 1.1's root below UNTIS_API_URL.
const oneRosterRoot = "/ims/oneroster/v1p1/"

// writeMethods are the methods a write rule may name; defaultWriteMethods are those a rule
// without methods allows. DELETE is allowed only where a rule names it.
var (
	writeMethods        = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	defaultWriteMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch}
)

// WriteRules are the extern API paths the app may write to (INTERNAL_API_WRITE_PATHS): a
// comma-separated list of rules "[METHODS ]PATH". PATH is a platform path below
// /WebUntis/api/rest/extern/; "*" stands for any characters within one segment
// (/WebUntis/api/rest/extern/v1/students/*), and a PATH ending in "/" matches everything below it
// (the patterns of internal/pathrule, as GATEWAY_PUBLIC_PATHS).
// METHODS is one of POST, PUT, PATCH, DELETE or several joined by "|" (PUT|PATCH); without it a
// rule allows POST, PUT and PATCH. The zero value allows nothing.
type WriteRules struct {
	rules []writeRule
}

type writeRule struct {
	methods []string
	path    pathrule.Pattern
}

// ParseWriteRules reads INTERNAL_API_WRITE_PATHS.
func ParseWriteRules(v string) (WriteRules, error) {
	var wr WriteRules
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		rule, err := parseWriteRule(s)
		if err != nil {
			return WriteRules{}, err
		}
		wr.rules = append(wr.rules, rule)
	}
	return wr, nil
}

func parseWriteRule(s string) (writeRule, error) {
	var rule writeRule
	p := s
	if m, rest, ok := strings.Cut(s, " "); ok {
		p = strings.TrimSpace(rest)
		for method := range strings.SplitSeq(m, "|") {
			if !slices.Contains(writeMethods, method) {
				return writeRule{}, fmt.Errorf("%q: %q is not one of POST, PUT, PATCH, DELETE", s, method)
			}
			if !slices.Contains(rule.methods, method) {
				rule.methods = append(rule.methods, method)
			}
		}
	} else {
		rule.methods = defaultWriteMethods
	}
	if !strings.HasPrefix(p, externRoot) || len(p) == len(externRoot) {
		return writeRule{}, fmt.Errorf("%q: the path must lie below %s (such as %sv1/students)", s, externRoot, externRoot)
	}
	var err error
	if rule.path, err = pathrule.Parse(s, p); err != nil {
		return writeRule{}, err
	}
	return rule, nil
}

// Len is the number of rules.
func (wr WriteRules) Len() int { return len(wr.rules) }

// Allows reports whether method may write to p, a platform path in the escaped form it is sent
// in (already checked by platform.CheckAPIPath: clean, no encoded separator or dot). A segment
// sent percent-encoded matches a rule only as it was sent, so an encoding can only refuse a
// write, never allow one.
func (wr WriteRules) Allows(method, p string) bool {
	return slices.Contains(wr.Methods(p), method)
}

// Methods lists the write methods the rules allow on p, in the order POST, PUT, PATCH, DELETE.
func (wr WriteRules) Methods(p string) []string {
	if len(wr.rules) == 0 || !strings.HasPrefix(p, "/") {
		return nil
	}
	segs := pathrule.Segments(p)
	var out []string
	for _, m := range writeMethods {
		for _, rule := range wr.rules {
			if slices.Contains(rule.methods, m) && rule.path.Match(segs) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}
