package exampleapp

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// The identity headers the gateway sets on every request it proxies with a session (and strips
// from every request a client sends). Free-text values are UTF-8, percent-encoded as in RFC 3986
// (decode with url.PathUnescape: a "+" stays a "+"); the launch context and the setup answers are
// application/x-www-form-urlencoded.
const (
	HeaderTenantID   = "X-Untis-Tenant-Id"
	HeaderUserID     = "X-Untis-User-Id"
	HeaderRole       = "X-Untis-Role"
	HeaderGivenName  = "X-Untis-Given-Name"
	HeaderFamilyName = "X-Untis-Family-Name"
	HeaderEmail      = "X-Untis-Email"
	HeaderSchoolName = "X-Untis-School-Name"
	HeaderLaunch     = "X-Untis-Launch"
	HeaderSetup      = "X-Untis-Setup"
	HeaderIdentity   = "X-Untis-Identity"
)

// textHeaders are the single-valued, percent-encoded headers, in the order the page shows them.
var textHeaders = []string{HeaderTenantID, HeaderUserID, HeaderRole, HeaderGivenName, HeaderFamilyName, HeaderEmail, HeaderSchoolName}

// identity is what the headers say about the signed-in user.
type identity struct {
	TenantID, UserID, Role       string
	GivenName, FamilyName, Email string
	SchoolName                   string
	Launch, Setup                []pair // in the order sent
	Token                        string // the X-Untis-Identity JWT, as sent
	Present                      bool   // any identity header came with the request
	Problems                     []string
}

// pair is one key and value of the launch context or the setup answers.
type pair struct{ Key, Value string }

// Name is the user's full name as the page shows it.
func (id identity) Name() string {
	switch {
	case id.GivenName != "" && id.FamilyName != "":
		return id.GivenName + " " + id.FamilyName
	case id.GivenName != "" || id.FamilyName != "":
		return id.GivenName + id.FamilyName
	}
	return id.UserID
}

// fromHeaders reads the identity headers of r. It never fails: what cannot be decoded is left
// out and described in Problems, for the page to show.
func fromHeaders(r *http.Request) identity {
	var id identity
	fields := map[string]*string{
		HeaderTenantID: &id.TenantID, HeaderUserID: &id.UserID, HeaderRole: &id.Role,
		HeaderGivenName: &id.GivenName, HeaderFamilyName: &id.FamilyName, HeaderEmail: &id.Email,
		HeaderSchoolName: &id.SchoolName,
	}
	for _, name := range append(slices.Clone(textHeaders), HeaderLaunch, HeaderSetup, HeaderIdentity) {
		vs := r.Header.Values(name)
		if len(vs) == 0 {
			continue
		}
		id.Present = true
		if len(vs) > 1 {
			// The gateway sets each header once; two values mean something else added one.
			id.Problems = append(id.Problems, fmt.Sprintf("%s came %d times; only the first is used", name, len(vs)))
		}
		v := vs[0]
		switch name {
		case HeaderLaunch, HeaderSetup:
			pairs, err := decodeForm(v)
			if err != nil {
				id.Problems = append(id.Problems, fmt.Sprintf("%s is not form-encoded UTF-8: %v", name, err))
				continue
			}
			if name == HeaderLaunch {
				id.Launch = pairs
			} else {
				id.Setup = pairs
			}
		case HeaderIdentity:
			id.Token = v
		default:
			s, err := url.PathUnescape(v)
			if err != nil || !utf8.ValidString(s) {
				id.Problems = append(id.Problems, fmt.Sprintf("%s is not percent-encoded UTF-8", name))
				continue
			}
			*fields[name] = s
		}
	}
	return id
}

// decodeForm decodes application/x-www-form-urlencoded text, keeping the order of the keys.
func decodeForm(v string) ([]pair, error) {
	values, err := url.ParseQuery(v)
	if err != nil {
		return nil, err
	}
	var out []pair
	seen := map[string]bool{}
	// url.Values forgets the order; walk the raw text for it.
	for part := range strings.SplitSeq(v, "&") {
		k, _, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || key == "" || seen[key] {
			continue
		}
		seen[key] = true
		val := values.Get(key)
		if !utf8.ValidString(key) || !utf8.ValidString(val) {
			return nil, fmt.Errorf("%q is not UTF-8", key)
		}
		out = append(out, pair{key, val})
	}
	return out, nil
}
