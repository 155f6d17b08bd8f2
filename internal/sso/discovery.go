package sso

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// issuerEntry is a school's discovery: its issuer and the keys its JWKS URL serves. ready is
// closed once the fetch that fills it has ended.
type issuerEntry struct {
	ready   chan struct{}
	issuer  string
	keys    *keySet
	err     error
	fetched time.Time
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
	jwksURL, err := s.discover(ctx, want)
	s.m.discovery.With(outcomeLabel(err)).Inc()
	if err != nil {
		e.err = err
		s.log.WarnContext(ctx, "sso discovery failed", "tenant_id", tid, "err", err)
		return
	}
	e.issuer = want
	e.keys = s.keySetFor(jwksURL)
}

// discover fetches the school's discovery document and returns its JWKS URL. The document must
// name the expected issuer, and its JWKS URL must lie on UNTIS_API_URL: nothing the platform's
// answer says may send us elsewhere.
func (s *Service) discover(ctx context.Context, issuer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return "", fmt.Errorf("discovery: %s answered %d", req.URL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes+1))
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if len(body) > maxDiscoveryBytes {
		return "", fmt.Errorf("discovery: document over %d bytes", maxDiscoveryBytes)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery: not JSON: %w", err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discovery: issuer is %q, want %q", doc.Issuer, issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || u.Scheme != s.cfg.APIURL.Scheme || u.Host != s.cfg.APIURL.Host || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("discovery: jwks_uri %q is not on UNTIS_API_URL", doc.JWKSURI)
	}
	return u.String(), nil
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
