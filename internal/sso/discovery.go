package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// issuerEntry is a school's discovery: its issuer, its endpoints and how to authenticate at its
// token endpoint, and the keys its JWKS URL serves. ready is closed once the fetch that fills it
// has ended.
type issuerEntry struct {
	ready     chan struct{}
	issuer    string
	authURL   string
	tokenURL  string
	authStyle oauth2.AuthStyle
	keys      *keySet
	err       error
	fetched   time.Time
}

// Discovery failures, told apart: an unreachable document does not stop a sign-in from starting
// at the documented authorize endpoint (it may be back by the callback, which needs it); one
// that sends us off UNTIS_API_URL, or names no client authentication we can do, is a
// configuration problem and stops the school's sign-in.
var (
	errDiscoveryUnreachable  = errors.New("discovery document could not be fetched")
	errDiscoveryUntrusted    = errors.New("discovery names an endpoint that is not on UNTIS_API_URL")
	errAuthMethodUnsupported = errors.New("discovery's token_endpoint_auth_methods_supported lists neither client_secret_post nor client_secret_basic")
)

// Token endpoint client authentication methods (OIDC Discovery §3, OIDC Core §9).
const (
	authClientSecretPost  = "client_secret_post"
	authClientSecretBasic = "client_secret_basic"
)

// discovered is what a school's discovery document tells, checked.
type discovered struct {
	jwksURL, authURL, tokenURL string
	authStyle                  oauth2.AuthStyle
}

// issuerFor returns the school's discovery, fetching it when it is not cached, older than
// DiscoveryTTL, or failed more than a few seconds ago. Concurrent callers share one fetch.
func (s *Service) issuerFor(ctx context.Context, tid string) (*issuerEntry, error) {
	s.mu.Lock()
	e := s.issuers[tid]
	if e == nil || s.stale(e) {
		e = &issuerEntry{ready: make(chan struct{})}
		s.issuers[tid] = e
		s.mu.Unlock()
		// Detached from the caller: others may be waiting for this same fetch.
		s.fill(context.WithoutCancel(ctx), tid, e)
	} else {
		s.mu.Unlock()
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// stale reports whether a finished entry must be fetched again; an entry being filled is not.
// Called with s.mu held.
func (s *Service) stale(e *issuerEntry) bool {
	select {
	case <-e.ready:
	default:
		return false
	}
	age := s.now().Sub(e.fetched)
	if e.err != nil {
		return age >= discoveryRetryAfter
	}
	return age >= s.cfg.DiscoveryTTL
}

func (s *Service) fill(ctx context.Context, tid string, e *issuerEntry) {
	defer close(e.ready)
	e.fetched = s.now()
	want := s.Issuer(tid)
	d, err := s.discover(ctx, want)
	s.m.discovery.With(outcomeLabel(err)).Inc()
	if err != nil {
		e.err = err
		s.log.WarnContext(ctx, "sso discovery failed", "tenant_id", tid, "err", err)
		return
	}
	e.issuer, e.authURL, e.tokenURL, e.authStyle = want, d.authURL, d.tokenURL, d.authStyle
	e.keys = s.keySetFor(d.jwksURL)
}

// discover fetches the school's discovery document (OIDC Discovery §3: the source of truth for
// the endpoints). The document must name the expected issuer and a JWKS URL; its authorize and
// token endpoints are used when it names them, the documented {issuer}/authorize and
// {issuer}/token when it does not. Every URL it names must lie on UNTIS_API_URL: nothing the
// platform's answer says may send a user, a code or a secret elsewhere.
func (s *Service) discover(ctx context.Context, issuer string) (discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return discovered{}, fmt.Errorf("discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return discovered{}, fmt.Errorf("%w: %w", errDiscoveryUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return discovered{}, fmt.Errorf("%w: %s answered %d", errDiscoveryUnreachable, req.URL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes+1))
	if err != nil {
		return discovered{}, fmt.Errorf("%w: %w", errDiscoveryUnreachable, err)
	}
	if len(body) > maxDiscoveryBytes {
		return discovered{}, fmt.Errorf("discovery: document over %d bytes", maxDiscoveryBytes)
	}
	var doc struct {
		Issuer            string   `json:"issuer"`
		JWKSURI           string   `json:"jwks_uri"`
		AuthorizeEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint     string   `json:"token_endpoint"`
		TokenAuthMethods  []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return discovered{}, fmt.Errorf("discovery: not JSON: %w", err)
	}
	if doc.Issuer != issuer {
		return discovered{}, fmt.Errorf("discovery: issuer is %q, want %q", doc.Issuer, issuer)
	}
	if doc.JWKSURI == "" {
		return discovered{}, errors.New("discovery: no jwks_uri")
	}
	d := discovered{authURL: issuer + "/authorize", tokenURL: issuer + "/token"}
	for _, f := range []struct {
		name, value string
		into        *string
	}{
		{"jwks_uri", doc.JWKSURI, &d.jwksURL},
		{"authorization_endpoint", doc.AuthorizeEndpoint, &d.authURL},
		{"token_endpoint", doc.TokenEndpoint, &d.tokenURL},
	} {
		if f.value == "" {
			continue // the documented endpoint
		}
		u, ok := s.onAPI(f.value)
		if !ok {
			return discovered{}, fmt.Errorf("%w: %s %q", errDiscoveryUntrusted, f.name, boundedValue(f.value))
		}
		*f.into = u
	}
	d.authStyle, err = authStyleFor(doc.TokenAuthMethods)
	return d, err
}

// onAPI reports whether raw is an absolute URL on UNTIS_API_URL (its scheme and host), without
// user info or fragment, and returns it normalised.
func (s *Service) onAPI(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != s.cfg.APIURL.Scheme || u.Host != s.cfg.APIURL.Host || u.User != nil ||
		u.Fragment != "" || u.Opaque != "" {
		return "", false
	}
	return u.String(), true
}

// authStyleFor picks the client authentication at the token endpoint from the methods the
// discovery lists: client_secret_post, the platform's documented way, when it is listed or when
// nothing is; client_secret_basic when only it of the two is. Never both (RFC 6749 §2.3), and
// never oauth2's auto-detection, which would try one and then the other.
func authStyleFor(methods []string) (oauth2.AuthStyle, error) {
	switch {
	case len(methods) == 0 || slices.Contains(methods, authClientSecretPost):
		return oauth2.AuthStyleInParams, nil
	case slices.Contains(methods, authClientSecretBasic):
		return oauth2.AuthStyleInHeader, nil
	}
	named := make([]string, 0, min(len(methods), 5))
	for _, m := range methods[:min(len(methods), 5)] {
		named = append(named, oauthErrorCode(m))
	}
	return 0, fmt.Errorf("%w (it lists %s)", errAuthMethodUnsupported, strings.Join(named, ", "))
}

// boundedValue keeps a value from the platform's answer short and printable for a log line.
func boundedValue(v string) string {
	if len(v) > 200 {
		v = v[:200] + "..."
	}
	return strings.ToValidUTF8(v, "?")
}

// keySetFor returns the one key set of a JWKS URL.
func (s *Service) keySetFor(jwksURL string) *keySet {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keysets[jwksURL]
	if k == nil {
		k = &keySet{
			url: jwksURL, client: s.client, minInterval: s.cfg.JWKSMinInterval, now: s.now,
			fetches: s.m.jwksFetches.Inc,
		}
		s.keysets[jwksURL] = k
	}
	return k
}

func outcomeLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// RefreshKeys keeps the key sets in use fresh until ctx ends: every JWKSRefreshCheck it fetches
// again, in the background, each key set used within the last hour whose max-age ends before the
// next check, so sign-ins do not wait for it and a key the platform removed stops being trusted.
// Key sets nobody used for an hour are left alone (their next use fetches them first) and are
// forgotten once no school's discovery names them. One goroutine for the service, plus at most
// a few short-lived fetches at a time; none outlives ctx.
func (s *Service) RefreshKeys(ctx context.Context) {
	t := time.NewTicker(s.cfg.JWKSRefreshCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.refreshKeySets(ctx)
		}
	}
}

// refreshKeySets is one round of RefreshKeys; it returns how many key sets it fetched.
func (s *Service) refreshKeySets(ctx context.Context) int {
	now := s.now()
	s.mu.Lock()
	named := make(map[*keySet]bool, len(s.issuers))
	for _, e := range s.issuers {
		select {
		case <-e.ready:
			if e.keys != nil {
				named[e.keys] = true
			}
		default:
		}
	}
	var due []*keySet
	for u, k := range s.keysets {
		switch {
		case k.refreshDue(now, s.cfg.JWKSRefreshCheck, jwksIdleAfter):
			due = append(due, k)
		case k.idle(now, jwksIdleAfter) && !named[k]:
			delete(s.keysets, u)
		}
	}
	s.mu.Unlock()

	sem := make(chan struct{}, jwksRefreshParallel)
	var wg sync.WaitGroup
	n := 0
	for _, k := range due {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return n
		}
		n++
		wg.Go(func() {
			defer func() { <-sem }()
			fetched, err := k.refresh(ctx)
			if !fetched {
				return
			}
			s.m.jwksRefresh.With(outcomeLabel(err)).Inc()
			if err != nil {
				s.log.WarnContext(ctx, "sso: background JWKS refresh failed; the held keys stay in use", "url", k.url, "err", err)
			}
		})
	}
	wg.Wait()
	return n
}
