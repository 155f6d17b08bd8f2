package platform_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

func TestUserRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "2001", Name: "Gymnasium Süd"})
	want := e.user(tid, platformsim.RoleTeacher)

	got, err := e.clients.For(tid).User(e.ctx(), want.SourcedID)
	if err != nil {
		t.Fatal(err)
	}
	if got.SourcedID != want.SourcedID || got.GivenName != want.GivenName || got.FamilyName != want.FamilyName ||
		got.Role != want.Role || got.Email != want.Email || got.Username != want.Username ||
		got.Identifier != want.Identifier || len(got.Orgs) != 1 || got.Orgs[0].SourcedID != want.Orgs[0].SourcedID {
		t.Errorf("User = %+v, want %+v", got, want)
	}
	if n := e.tokenRequests(tid); n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
	// A second call reuses the cached token.
	if _, err := e.clients.For(tid).User(e.ctx(), want.SourcedID); err != nil {
		t.Fatal(err)
	}
	if n := e.tokenRequests(tid); n != 1 {
		t.Errorf("token requests after a second call = %d, want 1 (cache)", n)
	}
	if m := e.metric(`platform_token_cache_lookups_total{result="hit"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("cache hit metric = %q, want 1", m)
	}
}

func TestOneTokenRequestForConcurrentCallers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "2002"})
	u := e.user(tid, platformsim.RoleStudent)
	// A slow token endpoint makes sure the callers really overlap.
	e.sim.SetTokenDelay(100 * time.Millisecond)

	const callers = 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			_, err := e.clients.For(tid).User(e.ctx(), u.SourcedID)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.tokenRequests(tid); n != 1 {
		t.Errorf("token requests for %d concurrent callers = %d, want 1", callers, n)
	}
	if n := e.apiCalls(tid); n != callers {
		t.Errorf("API calls = %d, want %d", n, callers)
	}
}

func TestRefreshBeforeExpiryWithoutAFailedCall(t *testing.T) {
	t.Parallel()
	for _, lifetime := range []time.Duration{180 * time.Second, 60 * time.Second} {
		t.Run(lifetime.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, options{sim: platformsim.Config{TokenLifetime: lifetime}})
			tid := e.school(platformsim.TenantSpec{ID: "2003"})
			u := e.user(tid, platformsim.RoleTeacher)
			cl := e.clients.For(tid)
			call := func() {
				t.Helper()
				if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
					t.Fatal(err)
				}
			}
			call()
			// Just before the refresh point (5/6 of the lifetime) the token is simply reused.
			e.sim.Advance(lifetime*5/6 - time.Second)
			call()
			if n := e.tokenRequests(tid); n != 1 {
				t.Fatalf("token requests before the refresh point = %d, want 1", n)
			}
			// Past it, the still-valid token serves the call and one refresh runs behind it.
			e.sim.Advance(2 * time.Second)
			call()
			waitFor(t, "the background refresh", func() bool { return e.tokenRequests(tid) == 2 })
			// Past the first token's expiry, the refreshed token is used without another request.
			e.sim.Advance(lifetime / 6)
			call()
			call()
			if n := e.tokenRequests(tid); n != 2 {
				t.Errorf("token requests = %d, want 2", n)
			}
			for _, c := range e.sim.APICalls() {
				if c.Status != http.StatusOK {
					t.Errorf("API call %s answered %d; the refresh must come before any failure", c.Path, c.Status)
				}
			}
		})
	}
}

func TestExpiredTokenIsNeverSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid, u, cl := e.warmSchool("2004")
	// Idle past expiry (no call triggered the background refresh): the next call waits for a
	// new token instead of sending the expired one.
	e.sim.Advance(platformsim.AccessTokenLifetime + time.Second)
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	if n := e.tokenRequests(tid); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
	for _, c := range e.sim.APICalls() {
		if c.Status != http.StatusOK {
			t.Errorf("API call answered %d: an expired token was sent", c.Status)
		}
	}
}

func TestUnauthorizedRefetchesOnceAndRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid, u, cl := e.warmSchool("2005")
	// The platform revokes every token of the school: the next call gets a 401, fetches a
	// fresh token and succeeds.
	if err := e.sim.RevokeTokens(tid); err != nil {
		t.Fatal(err)
	}
	got, err := cl.User(e.ctx(), u.SourcedID)
	if err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	if got.SourcedID != u.SourcedID {
		t.Errorf("got user %s", got.SourcedID)
	}
	if n := e.tokenRequests(tid); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
	// An injected 401 does the same.
	if err := e.sim.FailNextAPICalls(tid, 1, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	if n := e.tokenRequests(tid); n != 3 {
		t.Errorf("token requests = %d, want 3", n)
	}
	if m := e.metric("platform_unauthorized_total "); m != "platform_unauthorized_total 2" {
		t.Errorf("metric: %q", m)
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince != nil {
		t.Errorf("one 401 marked the credentials failing: %v", tn.CredentialsFailureReason)
	}
}

func TestManyCallersFailingOnOneTokenRefetchOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid, u, cl := e.warmSchool("2006")
	if err := e.sim.RevokeTokens(tid); err != nil {
		t.Fatal(err)
	}
	e.sim.SetTokenDelay(50 * time.Millisecond)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// The first token plus the refetches: callers that got the 401 after another caller had
	// already replaced the token use the replacement, so far fewer than 20 requests.
	if n := e.tokenRequests(tid); n > 3 {
		t.Errorf("token requests = %d, want the revoked token replaced about once", n)
	}
}

func TestUnauthorizedTwiceMarksFailingBacksOffAndRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{client: platform.Config{BackoffBase: time.Hour, BackoffMax: time.Hour}})
	tid := e.school(platformsim.TenantSpec{ID: "2007"})
	u := e.user(tid, platformsim.RoleTeacher)
	cl := e.clients.For(tid)

	if err := e.sim.FailNextAPICalls(tid, 2, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	_, err := cl.User(e.ctx(), u.SourcedID)
	if !errors.Is(err, platform.ErrCredentialsRejected) || errors.Is(err, platform.ErrUnauthorized) {
		t.Fatalf("err = %v, want credentials rejected (only) after a second 401", err)
	}
	if n := e.tokenRequests(tid); n != 2 {
		t.Errorf("token requests = %d, want 2 (one refetch)", n)
	}
	tn := e.tenant(tid)
	if tn.CredentialsFailingSince == nil || !strings.Contains(tn.CredentialsFailureReason, "401") {
		t.Fatalf("failing mark = %v %q, want set with the reason", tn.CredentialsFailingSince, tn.CredentialsFailureReason)
	}
	since := *tn.CredentialsFailingSince

	// Further calls fail fast: no token request, no API call.
	tokens, calls := e.tokenRequests(tid), e.apiCalls(tid)
	for range 5 {
		_, err = cl.User(e.ctx(), u.SourcedID)
		var be *platform.BackoffError
		if !errors.As(err, &be) || !errors.Is(err, platform.ErrCredentialsRejected) {
			t.Fatalf("err = %v, want a BackoffError wrapping the rejection", err)
		}
	}
	if e.tokenRequests(tid) != tokens || e.apiCalls(tid) != calls {
		t.Errorf("backing off still called the platform: tokens %d→%d, calls %d→%d",
			tokens, e.tokenRequests(tid), calls, e.apiCalls(tid))
	}
	if m := e.metric("platform_tenants_credentials_failing "); m != "platform_tenants_credentials_failing 1" {
		t.Errorf("metric: %q", m)
	}
	if m := e.metric("platform_calls_backed_off_total "); m != "platform_calls_backed_off_total 5" {
		t.Errorf("metric: %q", m)
	}

	// The school's admin resets the credentials: the RESET webhook stores new ones, the cache
	// and backoff are dropped, and the next call works and clears the mark.
	if _, err := e.sim.Reset(e.ctx(), tid); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
	tn = e.tenant(tid)
	if tn.CredentialsFailingSince != nil || tn.CredentialsFailureReason != "" {
		t.Errorf("failing mark not cleared: %v %q (was set at %v)", tn.CredentialsFailingSince, tn.CredentialsFailureReason, since)
	}
	if m := e.metric("platform_tenants_credentials_failing "); m != "platform_tenants_credentials_failing 0" {
		t.Errorf("metric: %q", m)
	}
}

func TestBackoffGrowsAndEndsWithASuccessfulProbe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{client: platform.Config{BackoffBase: 40 * time.Second, BackoffMax: 10 * time.Minute}})
	tid := e.school(platformsim.TenantSpec{ID: "2008"})
	u := e.user(tid, platformsim.RoleTeacher)
	cl := e.clients.For(tid)

	// The token endpoint refuses the credentials three times in a row.
	if err := e.sim.FailNextTokenRequests(tid, 3, http.StatusUnauthorized, "invalid_client"); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	for i := range 3 {
		_, err := cl.User(e.ctx(), u.SourcedID)
		var te *platform.TokenError
		if !errors.As(err, &te) || te.Code != "invalid_client" || !errors.Is(err, platform.ErrCredentialsRejected) {
			t.Fatalf("probe %d: err = %v, want the token endpoint's invalid_client", i, err)
		}
		_, err = cl.User(e.ctx(), u.SourcedID)
		var be *platform.BackoffError
		if !errors.As(err, &be) {
			t.Fatalf("probe %d: second call err = %v, want a fast failure", i, err)
		}
		waits = append(waits, be.Until.Sub(e.sim.Now()))
		e.sim.Advance(be.Until.Sub(e.sim.Now()) + time.Millisecond)
	}
	// Equal jitter: the n-th wait lies in [base·2ⁿ⁻¹/2, base·2ⁿ⁻¹].
	for i, w := range waits {
		hi := 40 * time.Second << i
		if w < hi/2-time.Second || w > hi {
			t.Errorf("wait %d = %v, want within [%v, %v]", i+1, w, hi/2, hi)
		}
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince == nil || !strings.Contains(tn.CredentialsFailureReason, "invalid_client") {
		t.Fatalf("failing mark = %v %q", tn.CredentialsFailingSince, tn.CredentialsFailureReason)
	}
	// The platform accepts the credentials again: the next probe succeeds and clears the mark.
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince != nil {
		t.Errorf("failing mark not cleared after a success")
	}
}

func TestTransientTokenFailureBacksOffWithoutTheFailingMark(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "2009"})
	u := e.user(tid, platformsim.RoleTeacher)
	if err := e.sim.FailNextTokenRequests(tid, 1, http.StatusServiceUnavailable, ""); err != nil {
		t.Fatal(err)
	}
	_, err := e.clients.For(tid).User(e.ctx(), u.SourcedID)
	var te *platform.TokenError
	if !errors.As(err, &te) || !errors.Is(err, platform.ErrUnavailable) || te.RetryAfter != time.Second {
		t.Fatalf("err = %v, want ErrUnavailable with Retry-After 1s", err)
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince != nil {
		t.Errorf("a platform outage marked the credentials failing")
	}
	// Retry-After is honoured: no token request before it has passed.
	if _, err := e.clients.For(tid).User(e.ctx(), u.SourcedID); !errors.Is(err, platform.ErrUnavailable) {
		t.Errorf("err = %v, want the fast failure during Retry-After", err)
	}
	e.sim.Advance(2 * time.Second)
	if _, err := e.clients.For(tid).User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
}

func TestResetInvalidatesTheCachedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid, u, cl := e.warmSchool("2010")
	if _, err := e.sim.Reset(e.ctx(), tid); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	if n := e.tokenRequests(tid); n != 2 {
		t.Errorf("token requests = %d, want 2: the RESET must drop the cached token at once", n)
	}
	// The new token was fetched with the new password, on the first try: no 401 in between.
	for _, c := range e.sim.APICalls() {
		if c.Status != http.StatusOK {
			t.Errorf("API call answered %d", c.Status)
		}
	}
	if m := e.metric("platform_token_invalidations_total "); m != "platform_token_invalidations_total 1" {
		t.Errorf("metric: %q", m)
	}
}

// Another replica stores new credentials: this one hears of it through PostgreSQL and drops
// its cached token.
func TestCredentialChangesReachOtherReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "2011"})
	u := e.user(tid, platformsim.RoleTeacher)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { e.clients.Listen(ctx); close(done) }()
	defer func() {
		cancel()
		<-done
		if m := e.metric("platform_tenant_listener_connected "); m != "platform_tenant_listener_connected 0" {
			t.Errorf("after Listen returned: %q", m)
		}
	}()

	cl := e.clients.For(tid)
	// The listener flushes everything when it connects; wait until that has happened so the
	// token below is not dropped by it.
	waitFor(t, "the listener", func() bool {
		return e.metric("platform_tenant_listener_connected ") == "platform_tenant_listener_connected 1"
	})
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	_, secretValue, password, _ := e.sim.Credentials(tid)
	// Not e.storeCredentials: that invalidates in-process, like the replica that got the
	// webhook; here only the notification may do it.
	if _, err := e.store.AddCredentials(e.ctx(), tid, store.Credentials{
		ClientID: platformsim.DefaultClientID, Secret: secretValue, Password: password, Source: "manual",
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notification", func() bool {
		return strings.HasSuffix(e.metric("platform_token_invalidations_total "), " 1")
	})
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	if n := e.tokenRequests(tid); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
}

func TestPasswordSecretMixUpIsExplained(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "2012"})
	u := e.user(tid, platformsim.RoleTeacher)
	clientID, secretValue, password, _ := e.sim.Credentials(tid)
	// The admin pasted the OIDC secret where the password belongs.
	e.storeCredentials(tid, clientID, secretValue, secretValue)

	_, err := e.clients.For(tid).User(e.ctx(), u.SourcedID)
	var te *platform.TokenError
	if !errors.As(err, &te) || te.Code != "invalid_grant" || !errors.Is(err, platform.ErrCredentialsRejected) {
		t.Fatalf("err = %v, want the token endpoint's invalid_grant", err)
	}
	if !strings.Contains(err.Error(), "platform password, not the OIDC secret") {
		t.Errorf("error does not explain the mix-up: %v", err)
	}
	if tn := e.tenant(tid); !strings.Contains(tn.CredentialsFailureReason, "not the OIDC secret") {
		t.Errorf("failing reason = %q, want the explanation for the console", tn.CredentialsFailureReason)
	}

	// Proving pasted credentials: the right ones pass, swapped ones are named as swapped, a
	// wrong password is refused, and none of it touches the cache or the store.
	ctx := e.ctx()
	if err := e.clients.ProveCredentials(ctx, tid, clientID, secretValue, password); err != nil {
		t.Errorf("ProveCredentials(right) = %v", err)
	}
	err = e.clients.ProveCredentials(ctx, tid, clientID, password, secretValue)
	var se *platform.SwappedError
	if !errors.As(err, &se) || !errors.Is(err, platform.ErrCredentialsRejected) {
		t.Errorf("ProveCredentials(swapped) = %v, want a SwappedError", err)
	}
	before := e.sim.Stats().TokenRequestCount(tid, platformsim.GrantClientCredentials)
	err = e.clients.ProveCredentials(ctx, tid, clientID, secretValue, "wrong-password")
	if !errors.As(err, &te) || te.Code != "invalid_client" || !strings.Contains(err.Error(), "client id or the password") {
		t.Errorf("ProveCredentials(wrong password) = %v", err)
	}
	// invalid_client does not say the password was refused: no second, "swapped?" request.
	if n := e.sim.Stats().TokenRequestCount(tid, platformsim.GrantClientCredentials) - before; n != 1 {
		t.Errorf("a wrong password cost %d token requests, want 1", n)
	}
	before = e.sim.Stats().TokenRequestCount(tid, platformsim.GrantClientCredentials)
	if err := e.clients.ProveCredentials(ctx, tid, "another-app", secretValue, password); !errors.Is(err, platform.ErrCredentialsRejected) {
		t.Errorf("ProveCredentials(wrong client id) = %v", err)
	}
	if n := e.sim.Stats().TokenRequestCount(tid, platformsim.GrantClientCredentials) - before; n != 1 {
		t.Errorf("a wrong client id cost %d token requests, want 1", n)
	}
	err = e.clients.ProveCredentials(ctx, "9999", clientID, secretValue, password)
	if !errors.Is(err, platform.ErrCredentialsRejected) || !strings.Contains(err.Error(), "does not know this tenant") {
		t.Errorf("ProveCredentials(unknown tenant) = %v", err)
	}
	if err := e.clients.ProveCredentials(ctx, "../2012", clientID, secretValue, password); !errors.Is(err, platform.ErrBadRequest) {
		t.Errorf("ProveCredentials(path in tenant id) = %v, want ErrBadRequest", err)
	}
}

func TestNoCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	if err := e.store.UpsertTenant(e.ctx(), "2013", "pending_setup", ""); err != nil {
		t.Fatal(err)
	}
	for _, tid := range []string{"2013", "2099"} {
		_, err := e.clients.For(tid).User(e.ctx(), "x")
		if !errors.Is(err, platform.ErrNoCredentials) {
			t.Errorf("tenant %s: err = %v, want ErrNoCredentials", tid, err)
		}
	}
	if n := e.sim.Stats().TokenRequestCount("2013", platformsim.GrantClientCredentials); n != 0 {
		t.Errorf("token requests without credentials = %d", n)
	}
}

func TestCallerThatGivesUpDoesNotFailTheOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "2014"})
	u := e.user(tid, platformsim.RoleTeacher)
	e.sim.SetTokenDelay(200 * time.Millisecond)

	impatient, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := e.clients.For(tid).User(impatient, u.SourcedID); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("impatient caller: err = %v, want its deadline", err)
		}
	})
	wg.Go(func() {
		if _, err := e.clients.For(tid).User(e.ctx(), u.SourcedID); err != nil {
			t.Errorf("patient caller: %v", err)
		}
	})
	wg.Wait()
	if n := e.tokenRequests(tid); n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
}

func TestNoSecretInLogsOrErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{client: platform.Config{BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}})
	tid := e.school(platformsim.TenantSpec{ID: "2015"})
	u := e.user(tid, platformsim.RoleTeacher)
	clientID, secretValue, password, _ := e.sim.Credentials(tid)
	cl := e.clients.For(tid)

	var errs []error
	collect := func(_ any, err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	collect(cl.User(e.ctx(), u.SourcedID))
	userToken, err := e.sim.IssueUserToken(tid, u.SourcedID)
	if err != nil {
		t.Fatal(err)
	}
	collect(e.clients.ForUser(tid, userToken).User(e.ctx(), u.SourcedID))
	_ = e.sim.FailNextAPICalls(tid, 2, http.StatusUnauthorized)
	collect(cl.User(e.ctx(), u.SourcedID))
	time.Sleep(5 * time.Millisecond)
	e.storeCredentials(tid, clientID, secretValue, secretValue)
	collect(cl.User(e.ctx(), u.SourcedID))
	collect(nil, e.clients.ProveCredentials(e.ctx(), tid, clientID, password, secretValue))
	_ = e.sim.RevokeTokens(tid)
	collect(e.clients.ForUser(tid, userToken).User(e.ctx(), u.SourcedID))

	if len(errs) < 3 {
		t.Fatalf("only %d errors: the scenario did not fail where it should", len(errs))
	}
	// The simulator does not expose the client-credentials tokens it issued; the user's token
	// stands for them (it travels the same code path).
	secrets := []string{secretValue, password, userToken}
	e.logs.AssertNoSecrets(t, secrets...)
	for _, err := range errs {
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains a secret", err)
			}
		}
		if msg := platform.PublicMessage(err); strings.Contains(msg, "simulator") || strings.Contains(msg, tid) {
			t.Errorf("public message %q quotes the platform or an id", msg)
		}
	}
}

func TestConcurrentRefusalsCountAsOneFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{client: platform.Config{BackoffBase: time.Minute, BackoffMax: time.Hour}})
	tid, u, cl := e.warmSchool("2016")
	if err := e.sim.FailNextAPICalls(tid, 1000, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	e.sim.SetTokenDelay(30 * time.Millisecond)
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			if _, err := cl.User(e.ctx(), u.SourcedID); !errors.Is(err, platform.ErrCredentialsRejected) {
				t.Errorf("err = %v, want the rejection", err)
			}
		})
	}
	wg.Wait()
	// One incident: the first backoff step (30 s to 1 min), one warning, not thirty.
	_, err := cl.User(e.ctx(), u.SourcedID)
	var be *platform.BackoffError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a BackoffError", err)
	}
	if wait := be.Until.Sub(e.sim.Now()); wait > time.Minute || wait < 29*time.Second {
		t.Errorf("backoff = %v, want the first step (30s-1m)", wait)
	}
	if n := len(e.logs.Find(t, "platform refused a fresh token; backing off")); n != 1 {
		t.Errorf("%d refusal warnings, want 1", n)
	}
}

func TestFailedBackgroundRefreshKeepsItsBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{client: platform.Config{BackoffBase: time.Minute, BackoffMax: time.Hour}})
	tid, u, cl := e.warmSchool("2017")
	if err := e.sim.FailNextTokenRequests(tid, 1, http.StatusUnauthorized, "invalid_client"); err != nil {
		t.Fatal(err)
	}
	e.sim.Advance(155 * time.Second) // past the refresh point, before expiry
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed refresh", func() bool {
		tn := e.tenant(tid)
		return tn.CredentialsFailingSince != nil
	})
	// Calls with the still-valid old token succeed, but prove nothing about the credentials
	// now: the backoff stands (no new token request) and so does the mark.
	for range 10 {
		if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.tokenRequests(tid); n != 2 {
		t.Errorf("token requests = %d, want 2: the backoff after the failed refresh was lost", n)
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince == nil {
		t.Error("calls with the old token cleared the mark")
	}
}

func TestUserClientWithoutTokenNeverFallsBackToTheSchool(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "2018"})
	u := e.user(tid, platformsim.RoleTeacher)
	cl := e.clients.ForUser(tid, "")
	if _, err := cl.User(e.ctx(), u.SourcedID); !errors.Is(err, platform.ErrUnauthorized) {
		t.Errorf("err = %v, want ErrUnauthorized", err)
	}
	if e.tokenRequests(tid) != 0 || e.apiCalls(tid) != 0 {
		t.Errorf("an empty user token called the platform: %d token requests, %d calls", e.tokenRequests(tid), e.apiCalls(tid))
	}
	if s := fmt.Sprintf("%v %+v %#v", cl, cl, cl); strings.Contains(s, "Bearer") || !strings.Contains(s, "as a user") {
		t.Errorf("formatted client: %s", s)
	}
	tok, _ := e.sim.IssueUserToken(tid, u.SourcedID)
	if s := fmt.Sprintf("%v %+v %#v", e.clients.ForUser(tid, tok), e.clients.ForUser(tid, tok), e.clients.ForUser(tid, tok)); strings.Contains(s, tok) {
		t.Errorf("formatting a client prints the user's token: %s", s)
	}
}

func TestDeactivationDropsTheCachedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	// The schools exist before the listener starts, so no late notification of their
	// activation drops a token this test counts.
	tid := e.school(platformsim.TenantSpec{ID: "2019"})
	other := e.school(platformsim.TenantSpec{ID: "2020"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.clients.Listen(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the listener", func() bool {
		return e.metric("platform_tenant_listener_connected ") == "platform_tenant_listener_connected 1"
	})
	u, uo := e.user(tid, platformsim.RoleTeacher), e.user(other, platformsim.RoleTeacher)
	for _, c := range []struct{ tid, uid string }{{tid, u.SourcedID}, {other, uo.SourcedID}} {
		if _, err := e.clients.For(c.tid).User(e.ctx(), c.uid); err != nil {
			t.Fatal(err)
		}
	}
	// Another replica records the deactivation (the webhook's store write); this one hears it.
	if err := e.store.UpsertTenant(e.ctx(), tid, "deactivated", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deactivation to drop the token", func() bool {
		_, err := e.clients.For(tid).User(e.ctx(), u.SourcedID)
		return errors.Is(err, platform.ErrNoCredentials)
	})
	if n := e.tokenRequests(tid); n != 1 {
		t.Errorf("token requests = %d: a deactivated school's credentials were used", n)
	}
	// The other school is untouched.
	if _, err := e.clients.For(other).User(e.ctx(), uo.SourcedID); err != nil {
		t.Fatal(err)
	}
	if n := e.tokenRequests(other); n != 1 {
		t.Errorf("other school: token requests = %d, want 1", n)
	}
}

// A success that lands while the failing mark is being written must not leave the school
// "clean" with the mark in the store: the next success clears it.
func TestMarkWrittenDuringASuccessIsClearedLater(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{client: platform.Config{BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}})
	tid, u, cl := e.warmSchool("2021")
	// Hold the tenant's row so the mark's UPDATE waits.
	tx, err := e.store.Pool().Begin(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(e.ctx(), `SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE`, tid); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.FailNextAPICalls(tid, 2, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 1)
	go func() {
		_, err := cl.User(e.ctx(), u.SourcedID)
		refused <- err
	}()
	waitFor(t, "the refusal", func() bool { return e.tokenRequests(tid) == 2 && e.apiCalls(tid) == 3 })
	time.Sleep(5 * time.Millisecond) // past the 1 ms backoff
	// Meanwhile a call succeeds with a fresh token.
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(e.ctx()); err != nil { // the mark lands now
		t.Fatal(err)
	}
	if err := <-refused; !errors.Is(err, platform.ErrCredentialsRejected) {
		t.Fatalf("refused call: %v", err)
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince == nil {
		t.Skip("the mark did not land after the success; the race this test is about did not happen")
	}
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatal(err)
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince != nil {
		t.Errorf("the mark stays although the credentials work: %q", tn.CredentialsFailureReason)
	}
}
