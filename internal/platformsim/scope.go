package platformsim

import (
	"fmt"
	"slices"
	"strings"
)

// Scopes the simulated platform knows. Every application is allowed
// ScopeOpenID; the API scopes it is allowed at a school are its PAM
// permissions (TenantSpec.Scopes).
const (
	ScopeOpenID             = "openid"
	ScopeRosterCoreReadonly = "roster-core.readonly"
)

// defaultScopes are the permissions of an application whose spec names none.
var defaultScopes = []string{ScopeOpenID, ScopeRosterCoreReadonly}

// validScopeToken reports whether s is an RFC 6749 §3.3 scope-token.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// appScopes returns the scopes an application is allowed: openid plus the
// spec's scopes (default roster-core.readonly), deduplicated.
func appScopes(spec []string) ([]string, error) {
	if spec == nil {
		return slices.Clone(defaultScopes), nil
	}
	out := []string{ScopeOpenID}
	for _, sc := range spec {
		if !validScopeToken(sc) {
			return nil, fmt.Errorf("platformsim: invalid scope %q", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// intersectScopes returns the requested scopes the application is allowed,
// in the order asked and without duplicates: what authorize grants.
func intersectScopes(requested string, allowed []string) []string {
	var out []string
	for _, sc := range strings.Fields(requested) {
		if slices.Contains(allowed, sc) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// hasScope reports whether the space-separated scope list contains want,
// without allocating.
func hasScope(scope, want string) bool {
	for scope != "" {
		var sc string
		sc, scope, _ = strings.Cut(scope, " ")
		if sc == want {
			return true
		}
	}
	return false
}
