package sso

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/untis-partner/server/internal/metrics"
)

var testEpoch = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// TestUnknownKidRightAfterFetch: the platform rotates its key right after our last JWKS fetch.
// The first token of the new key makes one fetch at once and is accepted; concurrent tokens of
// the new key share that fetch.
func TestUnknownKidRightAfterFetch(t *testing.T) {
	t.Parallel()
	rsaKey, rsaKey2, _ := benchKeys(t)
	ctx := context.Background()
	clock := &testClock{now: testEpoch}
	j := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"))
	keys := j.keySet(clock)
	claims := idTokenClaims(clock.Now())
	if _, err := keys.verify(ctx, signToken(t, jose.RS256, rsaKey, "k1", claims)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	j.publish(t, pubJWK(rsaKey2, "k2", "RS256", "sig"), pubJWK(rsaKey, "k1", "RS256", "sig"))
	clock.Advance(time.Second)

	const callers = 50
	rotated := signToken(t, jose.RS256, rsaKey2, "k2", claims)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			_, errs[i] = keys.verify(ctx, rotated)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: a token of the key rotated in 1 s after our fetch was refused: %v", i, err)
		}
	}
	if n := j.fetches.Load(); n != 2 {
		t.Errorf("%d concurrent tokens of the new key made %d JWKS fetches, want 1", callers, n-1)
	}
	// The old key still verifies while it is published.
	if _, err := keys.verify(ctx, signToken(t, jose.RS256, rsaKey, "k1", claims)); err != nil {
		t.Errorf("k1: %v", err)
	}
}

// TestKidStillUnknownAfterFetchWaits: a key id still unknown after a fresh fetch is refused, and
// the next fetch for an unknown key id waits the interval; then it is fetched again.
func TestKidStillUnknownAfterFetchWaits(t *testing.T) {
	t.Parallel()
	rsaKey, rsaKey2, _ := benchKeys(t)
	ctx := context.Background()
	clock := &testClock{now: testEpoch}
	j := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"))
	keys := j.keySet(clock)
	claims := idTokenClaims(clock.Now())
	if _, err := keys.verify(ctx, signToken(t, jose.RS256, rsaKey, "k1", claims)); err != nil {
		t.Fatal(err)
	}
	k3 := signToken(t, jose.RS256, rsaKey2, "k3", claims)
	if _, err := keys.verify(ctx, k3); !errors.Is(err, errUnknownKey) {
		t.Fatalf("unpublished k3: %v", err)
	}
	if n := j.fetches.Load(); n != 2 {
		t.Fatalf("the unknown kid made %d fetches, want 1", n-1)
	}
	// Published now, but within the interval after the last fetch for an unknown kid: refused
	// without a fetch.
	j.publish(t, pubJWK(rsaKey, "k1", "RS256", "sig"), pubJWK(rsaKey2, "k3", "RS256", "sig"))
	clock.Advance(DefaultJWKSMinInterval - time.Second)
	if _, err := keys.verify(ctx, k3); !errors.Is(err, errUnknownKey) {
		t.Fatalf("k3 within the interval: %v", err)
	}
	if n := j.fetches.Load(); n != 2 {
		t.Fatalf("fetched within the interval (%d)", n)
	}
	clock.Advance(time.Second)
	if _, err := keys.verify(ctx, k3); err != nil {
		t.Fatalf("k3 after the interval: %v", err)
	}
	if n := j.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
}

// TestKeysPastMaxAge: keys are trusted for the JWKS answer's max-age; then they are fetched
// again before use, so a key the platform removed stops verifying. A refresh that fails keeps
// the held keys in use, and is tried again at most every few seconds.
func TestKeysPastMaxAge(t *testing.T) {
	t.Parallel()
	rsaKey, rsaKey2, _ := benchKeys(t)
	ctx := context.Background()
	clock := &testClock{now: testEpoch}
	j := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"), pubJWK(rsaKey2, "k2", "RS256", "sig"))
	j.set("public, max-age=600", 0, nil)
	keys := j.keySet(clock)
	claims := idTokenClaims(clock.Now())
	old := signToken(t, jose.RS256, rsaKey, "k1", claims)
	current := signToken(t, jose.RS256, rsaKey2, "k2", claims)
	if _, err := keys.verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	j.publish(t, pubJWK(rsaKey2, "k2", "RS256", "sig")) // the platform removes k1
	clock.Advance(10*time.Minute - time.Second)
	if _, err := keys.verify(ctx, old); err != nil {
		t.Fatalf("k1 within max-age: %v", err)
	}
	if n := j.fetches.Load(); n != 1 {
		t.Fatalf("fetched within max-age (%d)", n)
	}
	clock.Advance(time.Second)
	if _, err := keys.verify(ctx, old); !errors.Is(err, errUnknownKey) {
		t.Fatalf("k1 after max-age, removed from the JWKS: err = %v, want errUnknownKey", err)
	}
	if n := j.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after max-age, want 2 (one refresh; the removed kid is not fetched for again)", n)
	}
	if _, err := keys.verify(ctx, current); err != nil {
		t.Fatalf("k2: %v", err)
	}

	// The platform's JWKS fails when the keys are due again: the held keys stay in use.
	j.set("max-age=600", http.StatusServiceUnavailable, nil)
	clock.Advance(10 * time.Minute)
	if _, err := keys.verify(ctx, current); err != nil {
		t.Fatalf("k2 while the JWKS fails: %v", err)
	}
	if n := j.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
	clock.Advance(noKeysRetryInterval - time.Second)
	if _, err := keys.verify(ctx, current); err != nil {
		t.Fatalf("k2 while the JWKS fails: %v", err)
	}
	if n := j.fetches.Load(); n != 3 {
		t.Fatalf("a failed refresh was retried within %s", noKeysRetryInterval)
	}
	j.set("max-age=600", 0, nil)
	clock.Advance(time.Second)
	if _, err := keys.verify(ctx, current); err != nil {
		t.Fatal(err)
	}
	if n := j.fetches.Load(); n != 4 {
		t.Fatalf("%d fetches, want 4 (the retry)", n)
	}
}

func TestJWKSMaxAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header []string
		want   time.Duration
	}{
		{nil, time.Hour},
		{[]string{"max-age=600"}, 10 * time.Minute},
		{[]string{"public, max-age=7200, must-revalidate"}, 2 * time.Hour},
		{[]string{`max-age="900"`}, 15 * time.Minute},
		{[]string{"Max-Age=900"}, 15 * time.Minute},
		{[]string{"max-age=0"}, 5 * time.Minute},
		{[]string{"max-age=60"}, 5 * time.Minute},
		{[]string{"no-store"}, 5 * time.Minute},
		{[]string{"max-age=3600, no-cache"}, 5 * time.Minute},
		{[]string{"max-age=999999999999"}, 24 * time.Hour},
		{[]string{"max-age=99999999999999999999999"}, time.Hour},
		{[]string{"max-age=-5"}, time.Hour},
		{[]string{"max-age=abc"}, time.Hour},
		{[]string{"max-age="}, time.Hour},
		{[]string{"public", "max-age=1800"}, 30 * time.Minute},
		{[]string{"max-age=1800, max-age=60"}, 30 * time.Minute},
	} {
		h := http.Header{}
		for _, v := range tc.header {
			h.Add("Cache-Control", v)
		}
		if got := jwksMaxAge(h); got != tc.want {
			t.Errorf("Cache-Control %q: max-age %s, want %s", tc.header, got, tc.want)
		}
	}
}

// TestVerifyDoesNotWaitForRefresh: while a background refresh runs, tokens of held keys are
// verified at once with the keys still within their max-age.
func TestVerifyDoesNotWaitForRefresh(t *testing.T) {
	t.Parallel()
	rsaKey, _, _ := benchKeys(t)
	ctx := context.Background()
	clock := &testClock{now: testEpoch}
	j := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"))
	keys := j.keySet(clock)
	token := signToken(t, jose.RS256, rsaKey, "k1", idTokenClaims(clock.Now()))
	if _, err := keys.verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	j.set("", 0, hold)
	done := make(chan error, 1)
	go func() {
		_, err := keys.refresh(ctx)
		done <- err
	}()
	<-hold // the refresh's request has reached the platform and waits there
	if _, err := keys.verify(ctx, token); err != nil {
		t.Fatalf("verify during a refresh: %v", err)
	}
	hold <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

// newKeyService is a Service with only what the key sets need.
func newKeyService(clock *testClock, client *http.Client) *Service {
	return &Service{
		cfg:    Config{JWKSMinInterval: DefaultJWKSMinInterval, JWKSRefreshCheck: DefaultJWKSRefreshCheck},
		client: client, log: slog.New(slog.DiscardHandler), now: clock.Now,
		m:       newMetrics(metrics.NewRegistry()),
		issuers: map[string]*issuerEntry{}, keysets: map[string]*keySet{},
	}
}

// name makes a school's discovery name the key set, as issuerFor does.
func (s *Service) name(tid string, k *keySet) {
	s.mu.Lock()
	s.issuers[tid] = &issuerEntry{keys: k}
	s.mu.Unlock()
}

// TestRefreshKeySets: key sets in use are fetched again in the background shortly before their
// max-age ends, so the next sign-in does not wait and a removed key stops verifying; key sets
// nobody uses are not fetched, and are forgotten once no school names them.
func TestRefreshKeySets(t *testing.T) {
	t.Parallel()
	rsaKey, rsaKey2, _ := benchKeys(t)
	ctx := context.Background()
	clock := &testClock{now: testEpoch}
	used := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"), pubJWK(rsaKey2, "k2", "RS256", "sig"))
	used.set("max-age=300", 0, nil)
	idle := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"))
	s := newKeyService(clock, used.srv.Client())
	ku, ki := s.keySetFor(used.srv.URL+"/jwks"), s.keySetFor(idle.srv.URL+"/jwks")
	s.name("1001", ku)
	claims := idTokenClaims(clock.Now())
	old := signToken(t, jose.RS256, rsaKey, "k1", claims)
	current := signToken(t, jose.RS256, rsaKey2, "k2", claims)
	for _, k := range []*keySet{ku, ki} {
		if _, err := k.verify(ctx, old); err != nil {
			t.Fatal(err)
		}
	}

	// Not due yet: nothing fetched.
	clock.Advance(4 * time.Minute)
	if _, err := ku.verify(ctx, current); err != nil {
		t.Fatal(err)
	}
	if n := s.refreshKeySets(ctx); n != 0 || used.fetches.Load() != 1 {
		t.Fatalf("refreshed %d key sets (%d fetches) before their max-age", n, used.fetches.Load())
	}
	// Within a check of the end of its max-age, the used key set is fetched again.
	used.publish(t, pubJWK(rsaKey2, "k2", "RS256", "sig")) // k1 removed
	clock.Advance(time.Minute - DefaultJWKSRefreshCheck)
	if n := s.refreshKeySets(ctx); n != 1 || used.fetches.Load() != 2 {
		t.Fatalf("refreshed %d key sets (%d fetches), want the used one", n, used.fetches.Load())
	}
	if got := s.m.jwksRefresh.With("ok").Value(); got != 1 {
		t.Errorf("sso_jwks_background_refreshes_total{outcome=ok} = %v", got)
	}
	// The removed key no longer verifies, and the sign-in did not wait for a fetch of the
	// current keys.
	if _, err := ku.verify(ctx, current); err != nil {
		t.Fatal(err)
	}
	if used.fetches.Load() != 2 {
		t.Fatalf("a sign-in after the background refresh fetched")
	}
	if _, err := ku.verify(ctx, old); !errors.Is(err, errUnknownKey) {
		t.Fatalf("removed k1 after the refresh: %v", err)
	}
	// The idle key set (used once, four and a half minutes ago, default max-age an hour) was
	// not due; an hour on, nobody has used it: it is not fetched, and since no school names it,
	// it is forgotten. The named one, idle too, is kept.
	clock.Advance(2 * time.Hour)
	if n := s.refreshKeySets(ctx); n != 0 || idle.fetches.Load() != 1 {
		t.Fatalf("refreshed %d idle key sets (%d fetches)", n, idle.fetches.Load())
	}
	s.mu.Lock()
	_, keptIdle := s.keysets[idle.srv.URL+"/jwks"]
	_, keptNamed := s.keysets[used.srv.URL+"/jwks"]
	s.mu.Unlock()
	if keptIdle || !keptNamed {
		t.Errorf("after two idle hours: unnamed key set kept %v, named kept %v", keptIdle, keptNamed)
	}
	// Its next use fetches it first (its keys are past their max-age).
	if _, err := ku.verify(ctx, current); err != nil || used.fetches.Load() != 4 {
		t.Errorf("use after idling: %v, %d fetches", err, used.fetches.Load())
	}
}

// TestRefreshKeysRunsUntilCancelled: the background refresh fetches due key sets on its own and
// returns when its context ends.
func TestRefreshKeysRunsUntilCancelled(t *testing.T) {
	t.Parallel()
	rsaKey, _, _ := benchKeys(t)
	clock := &testClock{now: testEpoch}
	j := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"))
	j.set("max-age=300", 0, nil)
	s := newKeyService(clock, j.srv.Client())
	s.cfg.JWKSRefreshCheck = 5 * time.Millisecond
	k := s.keySetFor(j.srv.URL + "/jwks")
	if _, err := k.verify(context.Background(), signToken(t, jose.RS256, rsaKey, "k1", idTokenClaims(clock.Now()))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		s.RefreshKeys(ctx)
		close(done)
	}()
	clock.Advance(5 * time.Minute)
	deadline := time.Now().Add(20 * time.Second)
	for j.fetches.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the background refresh never fetched the due key set")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("RefreshKeys did not return after its context ended")
	}
	// Refreshed once: the new max-age runs from the refresh.
	if n := j.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	s.mu.Lock()
	_, kept := s.keysets[j.srv.URL+"/jwks"]
	s.mu.Unlock()
	if !kept {
		t.Error("key set forgotten while in use")
	}
}
