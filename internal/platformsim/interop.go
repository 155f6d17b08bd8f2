package platformsim

import (
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
)

// Behaviours of other OpenID Providers a partner must cope with (OpenID Connect Discovery §3
// makes discovery the source of truth, not a documented URL pattern). Each is a per-school
// switch, so a person can try one school "as another OP" next to a normal one.
const (
	// AltAuthorizePath and AltTokenPath are where a school's authorize and token endpoints
	// live while it uses alternative endpoints: its discovery names them, and the documented
	// /authorize and /token answer 404 for it.
	AltAuthorizePath = "/auth"
	AltTokenPath     = "/oauth/token"
	// JWKSMaxAge is the Cache-Control max-age the JWKS is served with.
	JWKSMaxAge = 5 * time.Minute
)

// Token endpoint client authentication methods (RFC 6749 §2.3.1, OIDC Core §9).
const (
	AuthClientSecretPost  = "client_secret_post"
	AuthClientSecretBasic = "client_secret_basic"
)

// InteropOptions are a school's "behave like another OP" switches.
type InteropOptions struct {
	// AlternativeEndpoints moves the school's authorize and token endpoints to
	// AltAuthorizePath and AltTokenPath (discovery says so; the documented paths 404).
	AlternativeEndpoints bool `json:"alternativeEndpoints"`
	// BasicAuthOnly makes the school's token endpoint accept only client_secret_basic
	// (discovery lists only it); a client_secret_post exchange gets invalid_client.
	BasicAuthOnly bool `json:"basicAuthOnly"`
	// PostAuthOnly makes the school's token endpoint accept only client_secret_post
	// (discovery lists only it), for both grants: HTTP Basic gets invalid_client, and the
	// client-credentials grant takes client_id and the password as client_secret in the body.
	PostAuthOnly bool `json:"postAuthOnly"`
}

// ErrAuthOnlyConflict: a token endpoint cannot accept only Basic and only the body at once.
var ErrAuthOnlyConflict = errors.New("platformsim: basicAuthOnly and postAuthOnly exclude each other")

// SetInterop sets a school's interop switches.
func (s *Sim) SetInterop(tenantID string, o InteropOptions) error {
	if o.BasicAuthOnly && o.PostAuthOnly {
		return ErrAuthOnlyConflict
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return ErrUnknownTenant
	}
	t.interop = o
	return nil
}

// Interop returns a school's interop switches.
func (s *Sim) Interop(tenantID string) (InteropOptions, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return InteropOptions{}, false
	}
	return t.interop, true
}

// AuthorizationEndpoint and TokenEndpoint are the school's endpoints as its discovery names them.
func (s *Sim) AuthorizationEndpoint(tenantID string) string {
	o, _ := s.Interop(tenantID)
	return s.Issuer(tenantID) + o.authorizePath()
}

// TokenEndpoint is the school's token endpoint as its discovery names it.
func (s *Sim) TokenEndpoint(tenantID string) string {
	o, _ := s.Interop(tenantID)
	return s.Issuer(tenantID) + o.tokenPath()
}

func (o InteropOptions) authorizePath() string {
	if o.AlternativeEndpoints {
		return AltAuthorizePath
	}
	return "/authorize"
}

func (o InteropOptions) tokenPath() string {
	if o.AlternativeEndpoints {
		return AltTokenPath
	}
	return "/token"
}

func (o InteropOptions) authMethods() []string {
	switch {
	case o.BasicAuthOnly:
		return []string{AuthClientSecretBasic}
	case o.PostAuthOnly:
		return []string{AuthClientSecretPost}
	}
	return []string{AuthClientSecretPost, AuthClientSecretBasic}
}

// atPath serves h only where the school's endpoints are: on the documented paths
// (alternative=false) unless the school moved them, on the alternative paths only when it did.
// Elsewhere it answers 404, as an OP that does not serve that path. Unknown schools go to h,
// which says so itself.
func (s *Sim) atPath(alternative bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o, known := s.Interop(chi.URLParam(r, "tenantID"))
		if known && o.AlternativeEndpoints != alternative {
			writeJSON(w, http.StatusNotFound, oauthErr{"not_found", "this school's endpoints are elsewhere: see its discovery document"})
			return
		}
		h(w, r)
	}
}

// SigningKeys describes the published id_token keys.
type SigningKeys struct {
	// Current is the kid that signs new id_tokens.
	Current string `json:"current"`
	// Published are the kids in the JWKS, the current one first.
	Published []string `json:"published"`
	// MaxAgeSeconds is the JWKS's Cache-Control max-age.
	MaxAgeSeconds int `json:"maxAgeSeconds"`
}

// SigningKeys returns the current signing key and the keys the JWKS publishes.
func (s *Sim) SigningKeys() SigningKeys {
	ks := s.keys.Load()
	out := SigningKeys{Current: ks.current.kid, MaxAgeSeconds: int(JWKSMaxAge / time.Second)}
	seen := map[string]bool{}
	for _, k := range ks.published {
		if !seen[k.kid] {
			seen[k.kid] = true
			out.Published = append(out.Published, k.kid)
		}
	}
	return out
}

// RemoveOldSigningKeys drops every key but the current one from the JWKS, as a platform does
// some time after a rotation (or at once, after a key was compromised): id_tokens signed with
// the removed keys no longer verify. It returns how many keys were removed.
func (s *Sim) RemoveOldSigningKeys() int {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	old := s.keys.Load()
	removed := len(old.byKid) - 1
	if removed == 0 {
		return 0
	}
	s.keys.Store(newKeySet(old.current, nil))
	s.log.Info("platformsim: old signing keys removed from the JWKS", "kid", old.current.kid, "removed", removed)
	return removed
}
