package httpserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/store"
)

// listen runs the replica's change listener as the server does (cmd/server), and returns once
// it is connected: only then does the session cache answer, as in production.
func (g *gatewayEnv) listen(b *testing.B, in *instance) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	connected := make(chan struct{})
	var once atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.mu.Lock()
		ids := g.identities[in]
		g.mu.Unlock()
		in.platform.Listen(ctx, in.sso.ChangeHandler(), in.sessions.ChangeHandler(), ids.ChangeHandler(),
			store.TenantChangeHandler{Resync: func() {
				if once.CompareAndSwap(false, true) {
					close(connected)
				}
			}})
	}()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		b.Fatal("the change listener did not connect within 30 s")
	}
}

// BenchmarkGatewayProxiedGET is the gateway's hot path through the whole server: 16 goroutines
// GET an app path with 16 signed-in sessions, each request through the session check (the
// revocable session cache, SESSION_CACHE_TTL as in production), the identity headers with the
// signed assertion (kept per session) and the reverse proxy, to a trivial app over keep-alive
// connections. The "direct" run is the same app without the gateway. Profile it with
//
//	go test -run '^$' -bench GatewayProxiedGET -cpuprofile cpu.prof ./internal/httpserver/
//
// scripts/bench-gateway.sh measures the same with the binaries and a durable database.
func BenchmarkGatewayProxiedGET(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		h["Content-Length"] = []string{"3"}
		_, _ = io.WriteString(w, "ok\n")
	}))
	b.Cleanup(app.Close)
	client := &http.Client{Transport: benchTransport(b, benchMeConcurrency), Timeout: 30 * time.Second}
	get := func(u *url.URL, cookies []string, next *atomic.Int64) func() error {
		return func() error {
			req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}, Host: u.Host}
			if len(cookies) > 0 {
				req.Header["Cookie"] = []string{cookies[int(next.Add(1))%len(cookies)]}
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s answered %d", u, resp.StatusCode)
			}
			return nil
		}
	}

	b.Run("direct", func(b *testing.B) {
		u, _ := url.Parse(app.URL + "/bench")
		measureParallel(b, benchMeConcurrency, "requests", "req/s", get(u, nil, nil))
	})
	b.Run("proxied", func(b *testing.B) {
		g := newGatewayEnv(b, gatewayOptions{upstreamURL: app.URL, sessionCacheTTL: 10 * time.Second})
		tid := g.school(platformsim.TenantSpec{ID: "4401", Name: "Bench School", Teachers: 20}, store.StateActive)
		var cookies []string
		for _, u := range g.sim.Users(tid) {
			if u.Role != platformsim.RoleTeacher || len(cookies) == benchMeConcurrency {
				continue
			}
			br, _ := g.signIn(tid, u.SourcedID)
			sid := br.cookie(session.CookieName)
			if sid == "" {
				b.Fatal("no session cookie after sign-in")
			}
			cookies = append(cookies, (&http.Cookie{Name: session.CookieName, Value: sid}).String())
		}
		g.listen(b, g.app)
		u, _ := url.Parse(g.app.srv.URL + "/bench")
		var next atomic.Int64
		op := get(u, cookies, &next)
		for range cookies { // warm: each session's cache entry and assertion
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		measureParallel(b, benchMeConcurrency, "requests", "req/s", op)
	})
}
