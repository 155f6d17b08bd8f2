package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// The identity of a busy session: a cache hit, no signature.
func BenchmarkIdentityOfABusySession(b *testing.B) {
	ids, _, _, _ := newTestIdentities(0)
	ctx := context.Background()
	sess := testSession("s1", "1001")
	if _, err := ids.For(ctx, sess); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ids.For(ctx, sess); err != nil {
			b.Fatal(err)
		}
	}
}

// A GET through the proxy with identity headers, over real loopback HTTP with keep-alive, to a
// trivial app: the proxy's own cost (no session lookup here).
func BenchmarkProxiedGET(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer app.Close()
	up, _ := url.Parse(app.URL)
	p, err := NewProxy(ProxyConfig{Upstream: up, PublicURL: up, UpstreamTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxBody: DefaultMaxBody})
	if err != nil {
		b.Fatal(err)
	}
	ids, _, _, _ := newTestIdentities(0)
	id, err := ids.For(context.Background(), testSession("s1", "1001"))
	if err != nil {
		b.Fatal(err)
	}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.Serve(w, r, id) }))
	defer gw.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(gw.URL + "/x")
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
