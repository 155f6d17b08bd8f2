package platformsim

import (
	"errors"
	"fmt"
	"strings"
)

// predicate is one `field op 'value'` term of a OneRoster 1.1 filter.
type predicate struct {
	field, op, value string
}

// filterExpr is a parsed filter: one predicate, or several joined by the
// same logical operator (OneRoster 1.1 does not mix AND and OR).
type filterExpr struct {
	preds []predicate
	or    bool
}

var filterOps = []string{"!=", ">=", "<=", "=", ">", "<", "~"} // two-character operators first

// parseFilter parses OneRoster 1.1 filter syntax, e.g.
// `role='student' AND familyName~'mü'`. Field names are checked later
// against the resource, so the error can name the bad field.
func parseFilter(s string) (filterExpr, error) {
	var f filterExpr
	rest := strings.TrimSpace(s)
	if rest == "" {
		return f, errors.New("empty filter")
	}
	for {
		var p predicate
		i := 0
		for i < len(rest) && isFieldChar(rest[i]) {
			i++
		}
		if i == 0 {
			return f, fmt.Errorf("filter %q: expected a field name", s)
		}
		p.field = rest[:i]
		rest = strings.TrimLeft(rest[i:], " ")
		for _, op := range filterOps {
			if strings.HasPrefix(rest, op) {
				p.op = op
				break
			}
		}
		if p.op == "" {
			return f, fmt.Errorf("filter %q: expected one of = != > >= < <= ~ after %s", s, p.field)
		}
		rest = strings.TrimLeft(rest[len(p.op):], " ")
		if rest == "" || (rest[0] != '\'' && rest[0] != '"') {
			return f, fmt.Errorf("filter %q: the value must be quoted", s)
		}
		quote := rest[0]
		end := strings.IndexByte(rest[1:], quote)
		if end < 0 {
			return f, fmt.Errorf("filter %q: unterminated value", s)
		}
		p.value = rest[1 : 1+end]
		rest = strings.TrimLeft(rest[2+end:], " ")
		f.preds = append(f.preds, p)
		if rest == "" {
			return f, nil
		}
		var or bool
		switch {
		case strings.HasPrefix(rest, "AND "):
			rest = rest[4:]
		case strings.HasPrefix(rest, "OR "):
			or, rest = true, rest[3:]
		default:
			return f, fmt.Errorf("filter %q: expected AND or OR", s)
		}
		if len(f.preds) > 1 && or != f.or {
			return f, fmt.Errorf("filter %q: AND and OR cannot be mixed", s)
		}
		f.or = or
		rest = strings.TrimLeft(rest, " ")
	}
}

func isFieldChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

// match reports whether an object whose fields get returns matches.
func (f filterExpr) match(get func(string) (string, bool)) bool {
	for _, p := range f.preds {
		v, _ := get(p.field)
		ok := p.matches(v)
		if f.or && ok {
			return true
		}
		if !f.or && !ok {
			return false
		}
	}
	return !f.or
}

func (p predicate) matches(v string) bool {
	c := strings.Compare(v, p.value)
	switch p.op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case "~":
		return strings.Contains(strings.ToLower(v), strings.ToLower(p.value))
	}
	return false
}

// Field accessors for filter and sort: the value of a named field as a
// string, and whether the resource has such a field.

func (u *User) field(name string) (string, bool) {
	switch name {
	case "sourcedId":
		return u.SourcedID, true
	case "status":
		return u.Status, true
	case "dateLastModified":
		return u.DateLastModified, true
	case "username":
		return u.Username, true
	case "enabledUser":
		return u.EnabledUser, true
	case "givenName":
		return u.GivenName, true
	case "familyName":
		return u.FamilyName, true
	case "middleName":
		return u.MiddleName, true
	case "role":
		return u.Role, true
	case "identifier":
		return u.Identifier, true
	case "email":
		return u.Email, true
	case "sms":
		return u.SMS, true
	case "phone":
		return u.Phone, true
	}
	return "", false
}

func (c *Class) field(name string) (string, bool) {
	switch name {
	case "sourcedId":
		return c.SourcedID, true
	case "status":
		return c.Status, true
	case "dateLastModified":
		return c.DateLastModified, true
	case "title":
		return c.Title, true
	case "classCode":
		return c.ClassCode, true
	case "classType":
		return c.ClassType, true
	case "location":
		return c.Location, true
	case "school.sourcedId":
		return c.School.SourcedID, true
	}
	return "", false
}

func (e *Enrollment) field(name string) (string, bool) {
	switch name {
	case "sourcedId":
		return e.SourcedID, true
	case "status":
		return e.Status, true
	case "dateLastModified":
		return e.DateLastModified, true
	case "role":
		return e.Role, true
	case "primary":
		return e.Primary, true
	case "beginDate":
		return e.BeginDate, true
	case "endDate":
		return e.EndDate, true
	case "user.sourcedId":
		return e.User.SourcedID, true
	case "class.sourcedId":
		return e.Class.SourcedID, true
	case "school.sourcedId":
		return e.School.SourcedID, true
	}
	return "", false
}

func (o *Org) field(name string) (string, bool) {
	switch name {
	case "sourcedId":
		return o.SourcedID, true
	case "status":
		return o.Status, true
	case "dateLastModified":
		return o.DateLastModified, true
	case "name":
		return o.Name, true
	case "type":
		return o.Type, true
	case "identifier":
		return o.Identifier, true
	}
	return "", false
}
