package sso

import (
	"context"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/discovery"
)

// issuerEntry is what a sign-in needs of a school's discovery: the shared document (its issuer
// and endpoints, see internal/discovery), how to authenticate at its token endpoint, and the
// keys its JWKS URL serves. Built once per document and kept while the cache hands out that
// same document.
type issuerEntry struct {
	doc       *discovery.Document
	authStyle oauth2.AuthStyle
	keys      *keySet
}

// issuerFor returns the school's discovery from the cache shared with the server-to-server
// client (which fetches it when it is not cached, older than its TTL, or failed more than a few
// seconds ago; concurrent callers share one fetch).
func (s *Service) issuerFor(ctx context.Context, tid string) (*issuerEntry, error) {
	doc, err := s.disc.Get(ctx, tid)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.issuers[tid]; e != nil && e.doc == doc {
		return e, nil
	}
	e := &issuerEntry{doc: doc, authStyle: authStyleFor(doc), keys: s.keySetForLocked(doc.JWKSURL)}
	s.issuers[tid] = e
	return e, nil
}

// authStyleFor picks the client authentication of a code exchange: client_secret_post, the
// platform's documented way for it, when the discovery lists it or lists nothing;
// client_secret_basic when only it of the two is. Never both (RFC 6749 §2.3), and never oauth2's
// auto-detection, which would try one and then the other.
func authStyleFor(doc *discovery.Document) oauth2.AuthStyle {
	if doc.ClientAuth(discovery.ClientSecretPost) == discovery.ClientSecretBasic {
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleInParams
}

// keySetFor returns the one key set of a JWKS URL.
func (s *Service) keySetFor(jwksURL string) *keySet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keySetForLocked(jwksURL)
}

// keySetForLocked is keySetFor with s.mu held.
func (s *Service) keySetForLocked(jwksURL string) *keySet {
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
		if e.keys != nil {
			named[e.keys] = true
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
