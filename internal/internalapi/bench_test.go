package internalapi_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
)

// BenchmarkOneRosterPassthrough measures what the internal API adds to a platform call: the
// same OneRoster page (100 users, ~75 KB) fetched straight from the simulator with a token, and
// through the internal API (bearer check, the school's state from PostgreSQL, the cached token,
// the streamed copy), one request at a time over kept-alive connections. The difference of the
// two is the passthrough's latency overhead.
func BenchmarkOneRosterPassthrough(b *testing.B) {
	e := newEnv(b, options{simConfig: platformsim.Config{TokenLifetime: time.Hour}})
	a := e.school(platformsim.TenantSpec{ID: "1001", Students: 150})
	clientID, password := mustCreds(b, e.sim, a)
	direct := directToken(b, e.simURL, e.sim.Issuer(a), clientID, password)
	const page = "/ims/oneroster/v1p1/users?limit=100&offset=0"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	run := func(b *testing.B, url, auth string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", auth)
		var n int64
		for b.Loop() {
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			m, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("%d %v", resp.StatusCode, err)
			}
			n = m
		}
		b.SetBytes(n)
	}
	b.Run("direct", func(b *testing.B) { run(b, e.simURL+page, "Bearer "+direct) })
	b.Run("internal-api", func(b *testing.B) { run(b, e.internal.URL+schoolPath(a, page), "Bearer "+apiToken) })
}
