package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/store"
)

// The launch limits are settings of the running server (LAUNCH_LIMIT_PER_CLIENT,
// LAUNCH_LIMIT_PER_SCHOOL, 0 = off), counted per client as TRUSTED_PROXIES reveal it. Parallel
// clients launch against the whole program.
func TestServeLaunchLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, simSrv := simtest.NewServer(t, platformsim.Config{})
	if _, err := sim.AddTenant(platformsim.TenantSpec{ID: "7101", Name: "Mittelschule West"}); err != nil {
		t.Fatal(err)
	}
	clientID, sec, pw, _ := sim.Credentials("7101")
	dbURL := pgtest.NewDatabase(t)
	keys := newKeySpec(t)
	st := openStoreWith(t, dbURL, keys)
	if err := st.UpsertTenant(ctx, "7101", store.StateActive, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddCredentials(ctx, "7101", store.Credentials{ClientID: clientID, Secret: sec, Password: pw, Source: store.SourceWebhook}); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, map[string]string{
		"DATABASE_URL": dbURL, "ENCRYPTION_KEYS": keys, "UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"UNTIS_API_URL": simSrv.URL, "SHUTDOWN_DELAY": "0s", "TRUSTED_PROXIES": "127.0.0.1",
		"LAUNCH_LIMIT_PER_CLIENT": "10", "LAUNCH_LIMIT_PER_SCHOOL": "0",
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// burst launches n at once from ip and counts the answers by status.
	burst := func(n int, ip string) map[int]int {
		var (
			mu  sync.Mutex
			wg  sync.WaitGroup
			got = map[int]int{}
		)
		for range n {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, srv.base+"/launch?tenant_id=7101&lesson_id=1", nil)
				req.Header.Set("X-Forwarded-For", ip)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusTooManyRequests && (resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "Too many sign-ins")) {
					t.Errorf("a 429 without Retry-After or its page:\n%s", body)
				}
				mu.Lock()
				got[resp.StatusCode]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return got
	}
	start := time.Now()
	first := burst(30, "198.51.100.1")
	// 10 a minute is one every 6 s: a slow machine may see one more.
	extra := int(time.Since(start) / (6 * time.Second))
	if n := first[http.StatusFound]; n < 10 || n > 10+extra || first[http.StatusFound]+first[http.StatusTooManyRequests] != 30 {
		t.Errorf("30 launches from one client = %v, want 10 started and the rest refused", first)
	}
	// Another client has its own limit; the school's is off.
	if got := burst(12, "198.51.100.2"); got[http.StatusFound] < 10 || got[http.StatusTooManyRequests] == 0 {
		t.Errorf("12 launches from another client = %v", got)
	}
	var flows int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM auth_flows`).Scan(&flows); err != nil {
		t.Fatal(err)
	}
	if flows > 20+2*(extra+1) {
		t.Errorf("%d flow rows after 42 launches limited to 10 per client", flows)
	}
}
