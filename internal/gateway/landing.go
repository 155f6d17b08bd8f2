package gateway

import (
	"fmt"
	"strings"

	"github.com/untis-partner/server/internal/sso"
)

// Entry points, as the launch context tells them apart.
const (
	EntryMain   = "main"
	EntryLesson = "lesson"
	EntryExam   = "exam"
)

// EntryPoint names the entry point a launch came from: a lesson's details (lesson_id), an
// examination (exam_id), or the main menu.
func EntryPoint(launch map[string]string) string {
	switch {
	case launch["lesson_id"] != "":
		return EntryLesson
	case launch["exam_id"] != "":
		return EntryExam
	}
	return EntryMain
}

// Landing picks the path a sign-in lands on (GATEWAY_LANDING_PATHS): a launch's own return_to
// first, then a rule for its entry point, then one for the user's role, then "/". The zero
// Landing has no rules.
type Landing struct {
	entry map[string]string
	role  map[string]string
}

// ParseLanding reads rules such as "entry:lesson=/lessons,entry:exam=/exams,role:teacher=/teacher".
// Entry points are main, lesson and exam; roles are OneRoster roles (teacher, student,
// administrator, ...). Each path must be a path of the app (as return_to must be), not one the
// server reserves.
func ParseLanding(v string) (Landing, error) {
	l := Landing{entry: map[string]string{}, role: map[string]string{}}
	for rule := range strings.SplitSeq(v, ",") {
		rule = strings.TrimSpace(rule)
		if rule == "" {
			continue
		}
		key, target, ok := strings.Cut(rule, "=")
		kind, name, ok2 := strings.Cut(strings.TrimSpace(key), ":")
		target = strings.TrimSpace(target)
		if !ok || !ok2 || name == "" {
			return Landing{}, fmt.Errorf("%q is not a rule such as entry:lesson=/lessons or role:teacher=/teacher", rule)
		}
		var m map[string]string
		switch kind {
		case "entry":
			if name != EntryMain && name != EntryLesson && name != EntryExam {
				return Landing{}, fmt.Errorf("%q: the entry point must be main, lesson or exam", rule)
			}
			m = l.entry
		case "role":
			for _, c := range name {
				if c < 'a' || c > 'z' {
					return Landing{}, fmt.Errorf("%q: a role is a OneRoster role in lower case (teacher, student, administrator, ...)", rule)
				}
			}
			m = l.role
		default:
			return Landing{}, fmt.Errorf("%q: a rule starts with entry: or role:", rule)
		}
		if _, dup := m[name]; dup {
			return Landing{}, fmt.Errorf("%q: %s:%s has two rules", rule, kind, name)
		}
		clean, safe := sso.SafeReturnPath(target)
		if !safe || clean != target {
			return Landing{}, fmt.Errorf("%q: %q is not a plain path of the app (one leading /, no host, no ..)", rule, target)
		}
		if p, _, _ := strings.Cut(target, "?"); Reserved(p) {
			return Landing{}, fmt.Errorf("%q: %s is one of the server's own paths, not the app's", rule, p)
		}
		m[name] = target
	}
	return l, nil
}

// Target is where a sign-in lands: returnTo when the launch asked for a path other than "/",
// else the rule for its entry point, else the rule for the role, else "/".
func (l Landing) Target(returnTo string, launch map[string]string, role string) string {
	if returnTo != "" && returnTo != "/" {
		return returnTo
	}
	if p, ok := l.entry[EntryPoint(launch)]; ok {
		return p
	}
	if p, ok := l.role[role]; ok {
		return p
	}
	return "/"
}

// Len is the number of rules.
func (l Landing) Len() int { return len(l.entry) + len(l.role) }
