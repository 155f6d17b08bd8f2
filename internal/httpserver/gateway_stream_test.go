package httpserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// A WebSocket works through the gateway, for longer than the server's read and write timeouts,
// and is refused without a session.
func TestGatewayWebSocketEcho(t *testing.T) {
	t.Parallel()
	const serverTimeout = time.Second
	g := newGatewayEnv(t, gatewayOptions{serverTimeout: serverTimeout})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3801"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleStudent).SourcedID)
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: b.client})
	if err != nil {
		t.Fatalf("dial through the gateway: %v (%v)", err, resp)
	}
	defer c.CloseNow()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d, Jürgen", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo: "+msg {
			t.Fatalf("read %d: %q %v", i, got, err)
		}
		if i < 2 {
			// Quiet for longer than the server's timeouts: a switched connection is not cut.
			time.Sleep(serverTimeout + 300*time.Millisecond)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	if id := decoded(t, g.up.lastFor(t, "/ws").Header); id["X-Untis-Tenant-Id"] != tid {
		t.Errorf("the WebSocket's upgrade request carried %v", id)
	}

	// Without a session the upgrade never reaches the app.
	hits := g.up.hits.Load()
	anon := g.browser()
	_, resp, err = websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: anon.client})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous WebSocket: %v %v", err, resp)
	}
	if g.up.hits.Load() != hits {
		t.Error("an anonymous WebSocket reached the app")
	}
}

// heapSampler measures the live heap (after a collection) while a transfer runs: a proxy that
// held a body in memory would show it whole.
type heapSampler struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done sync.WaitGroup
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{base: liveHeap(), stop: make(chan struct{})}
	h.done.Go(func() {
		for {
			if v := liveHeap(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return h
}

// growth stops sampling and returns the largest growth of the live heap seen.
func (h *heapSampler) growth() int64 {
	close(h.stop)
	h.done.Wait()
	return int64(h.peak.Load()) - int64(h.base)
}

// countingReader produces n bytes without holding them.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), r.n)
	for i := range p[:k] {
		p[i] = 'u'
	}
	r.n -= k
	return int(k), nil
}

// A 100 MiB download and an upload at the configured limit pass with flat memory; an upload
// over the limit gets 413. Not parallel: it measures this process's heap.
func TestGatewayStreamsLargeBodiesWithFlatMemory(t *testing.T) {
	const (
		download = 100 << 20
		limit    = 32 << 20
		bound    = 16 << 20 // live-heap growth allowed while the bodies pass
	)
	// The server's own timeouts are short, so the transfers also prove they are not cut while
	// they move.
	g := newGatewayEnv(t, gatewayOptions{maxBody: limit, serverTimeout: 2 * time.Second})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3901"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)

	h := startHeapSampler()
	resp, err := b.client.Get(base + "/download?size=" + strconv.Itoa(download))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != download || resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %d bytes of %d, status %d, %v", n, download, resp.StatusCode, err)
	}
	if grew := h.growth(); grew > bound {
		t.Errorf("the live heap grew by %d MiB during a 100 MiB download", grew>>20)
	} else {
		t.Logf("100 MiB download: live heap grew by %.1f MiB", float64(grew)/(1<<20))
	}

	upload := func(size int64, chunked bool) (int, string) {
		t.Helper()
		var body io.Reader = &countingReader{n: size}
		req, _ := http.NewRequest(http.MethodPost, base+"/upload", body)
		if !chunked {
			req.ContentLength = size
		}
		resp, err := b.client.Do(req)
		if err != nil {
			// The gateway may close the connection while the client still sends the rest.
			if chunked || size > limit {
				return 0, err.Error()
			}
			t.Fatalf("upload: %v", err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}
	h = startHeapSampler()
	status, body := upload(limit, false)
	if status != http.StatusOK || body != strconv.Itoa(limit) {
		t.Fatalf("upload at the limit: %d %q", status, body)
	}
	status, body = upload(limit, true)
	if status != http.StatusOK || body != strconv.Itoa(limit) {
		t.Fatalf("chunked upload at the limit: %d %q", status, body)
	}
	if grew := h.growth(); grew > bound {
		t.Errorf("the live heap grew by %d MiB during two 32 MiB uploads", grew>>20)
	} else {
		t.Logf("two 32 MiB uploads: live heap grew by %.1f MiB", float64(grew)/(1<<20))
	}

	hits := g.up.hits.Load()
	if status, body := upload(limit+1, false); status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than this app accepts") {
		t.Errorf("declared upload over the limit: %d %q", status, body)
	}
	if g.up.hits.Load() != hits {
		t.Error("an upload declared over the limit reached the app")
	}
	if status, body := upload(limit+(1<<20), true); status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked upload over the limit: %d %q", status, body)
	}
}

// An event stream that keeps moving outlives the server's write timeout; one that stalls is cut
// after the idle timeout instead of hanging.
func TestGatewayStreamsOutliveServerTimeoutsAndStallsAreCut(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{serverTimeout: 500 * time.Millisecond, idle: 1500 * time.Millisecond})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3902"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)

	resp, err := b.client.Get(base + "/events?count=8&every=250ms")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			events++
		}
	}
	resp.Body.Close()
	if events != 8 || sc.Err() != nil || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("event stream over 2 s through a server with 0.5 s timeouts: %d of 8 events, %v", events, sc.Err())
	}

	// An answer that stops half-way: the client sees the connection end, within the idle
	// timeout and not the client's own 30 s.
	// (The first part may not even reach the client: with a Content-Length the answer is
	// buffered, and the connection is cut before it is flushed.)
	start := time.Now()
	resp, err = b.client.Get(base + "/stall")
	if err == nil {
		var got []byte
		got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || len(got) >= 1000 {
			t.Errorf("stalled answer read whole: %d bytes, %v", len(got), err)
		}
	}
	if took := time.Since(start); err == nil || took > 15*time.Second {
		t.Errorf("a stalled answer was cut after %s (%v)", took, err)
	} else {
		t.Logf("a stalled answer was cut after %s: %v", took.Round(time.Millisecond), err)
	}
}

// The app unreachable or too slow: a 502 or 504 in plain words (JSON for scripts), never a hang;
// the log says why, without a header value.
func TestGatewayUpstreamFailures(t *testing.T) {
	t.Parallel()
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there any more
		g := newGatewayEnv(t, gatewayOptions{upstreamURL: "http://" + addr})
		tid := g.school(platformsim.TenantSpec{ID: "4001"}, store.StateActive)
		b, landed := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
		if landed.status != http.StatusBadGateway || !strings.Contains(landed.body, "The app is not available") ||
			landed.header.Get("Content-Security-Policy") == "" {
			t.Errorf("unreachable app: %d\n%s", landed.status, landed.body)
		}
		got := b.do(http.MethodGet, g.app.srv.URL+"/api/x", http.Header{"Accept": {"application/json"}})
		if got.status != http.StatusBadGateway || !strings.Contains(got.body, `"upstream_unavailable"`) {
			t.Errorf("unreachable app, JSON: %d %s", got.status, got.body)
		}
		var reasons []string
		for _, r := range g.logs.Find(t, "proxied request failed") {
			reasons = append(reasons, fmt.Sprint(r["reason"]))
		}
		if len(reasons) != 2 || reasons[0] != "upstream_unreachable" {
			t.Errorf("log reasons %v", reasons)
		}
		g.logs.AssertNoSecrets(t, b.cookie("__Host-untis-session"))
	})
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		g := newGatewayEnv(t, gatewayOptions{upstreamTimeout: 300 * time.Millisecond})
		tid := g.school(platformsim.TenantSpec{ID: "4002"}, store.StateActive)
		b, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
		start := time.Now()
		got := b.get(g.app.srv.URL + "/slow")
		if got.status != http.StatusGatewayTimeout || !strings.Contains(got.body, "taking too long") {
			t.Errorf("slow app: %d\n%s", got.status, got.body)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("the 504 took %s", took)
		}
		got = b.do(http.MethodPost, g.app.srv.URL+"/slow", nil)
		if got.status != http.StatusGatewayTimeout || !strings.Contains(got.body, `"upstream_timeout"`) {
			t.Errorf("slow app, JSON: %d %s", got.status, got.body)
		}
		if rs := g.logs.Find(t, "proxied request failed"); len(rs) != 2 || rs[0]["reason"] != "upstream_timeout" {
			t.Errorf("log: %v", rs)
		}
		// A request that took its time is logged and counted under the gateway's route.
		metrics := b.get(g.app.srv.URL + "/metrics").body
		if !strings.Contains(metrics, `http_requests_total{route="gateway",method="GET",code="504"} 1`) {
			t.Errorf("metrics lack the gateway's 504:\n%s", grepLines(metrics, "gateway"))
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Public paths reach the app without a session and without identity; paths that only look
// public do not.
func TestGatewayPublicPaths(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{public: "/assets/,/health,/hooks/*/incoming"})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "4101"}, store.StateActive)
	signedIn, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	anon := g.browser()
	for _, b := range []*browser{anon, signedIn} {
		for _, p := range []string{"/assets/app.css", "/assets/img/logo.png?v=2", "/health", "/hooks/github/incoming"} {
			before := g.up.hits.Load()
			got := b.send(http.MethodGet, base+p, nil, http.Header{"X-Untis-Role": {"administrator"}, "X_Untis_Tenant_Id": {"1"}})
			if got.status != http.StatusOK || g.up.hits.Load() != before+1 || got.header.Get("Content-Security-Policy") != "" {
				t.Errorf("public %s: %d", p, got.status)
				continue
			}
			seen := g.up.last(t)
			if names := untisHeaders(seen.Header); len(names) != 0 {
				t.Errorf("public %s arrived with %v", p, names)
			}
			if strings.Contains(seen.Header.Get("Cookie"), "untis-") {
				t.Errorf("public %s arrived with our cookie", p)
			}
		}
	}
	// A third party's callback to a public path may post.
	if got := anon.send(http.MethodPost, base+"/hooks/github/incoming", strings.NewReader(`{"x":1}`), nil); got.status != http.StatusOK {
		t.Errorf("POST to a public callback: %d", got.status)
	}
	hits := g.up.hits.Load()
	for _, p := range []string{
		"/assets", "/health/x", "/hooks/github/other", "/private",
		"/assets/../private", "/assets/./x", "/assets//x", "/assets/..;/private", "/assets%2F..%2Fprivate",
		"/assets/%2e%2e/private", "/%61ssets/app.css",
	} {
		u, _ := url.Parse(base)
		status := rawRequest(t, base, "GET "+p+" HTTP/1.1\r\nHost: "+u.Host+"\r\nConnection: close\r\n\r\n")
		if status != http.StatusUnauthorized && status != http.StatusBadRequest && status != http.StatusNotFound {
			t.Errorf("anonymous %s: %d", p, status)
		}
	}
	if g.up.hits.Load() != hits {
		t.Errorf("%d requests for paths that only look public reached the app", g.up.hits.Load()-hits)
	}
}

// A deactivation, a deletion or a sign-out cuts a live proxied session off on every replica
// within a second.
func TestGatewaySessionsFollowTheSchoolOnEveryReplica(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{})
	second := g.newInstance()
	replicas := []string{g.app.srv.URL, second.srv.URL}

	// reached reports whether a request on the replica reached the app.
	reached := func(b *browser, base, path string) bool {
		before := g.up.hits.Load()
		got := b.get(base + path)
		ok := got.status == http.StatusOK && g.up.hits.Load() == before+1
		if !ok && got.status != http.StatusUnauthorized {
			t.Fatalf("%s%s = %d", base, path, got.status)
		}
		return ok
	}
	cutOff := func(name string, b *browser, end func()) {
		t.Helper()
		for _, base := range replicas {
			if !reached(b, base, "/before") {
				t.Fatalf("%s: the live session does not reach the app on %s", name, base)
			}
		}
		end()
		ended := time.Now()
		for _, base := range replicas {
			for reached(b, base, "/after") {
				if time.Since(ended) > time.Second {
					t.Errorf("%s: %s still lets the session through %s later", name, base, time.Since(ended))
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}

	g.obActivate("4201")
	b, _ := g.signIn("4201", g.user("4201", platformsim.RoleTeacher).SourcedID)
	cutOff("deactivation", b, func() {
		if res, err := g.sim.Deactivate(g.ctx(), "4201", false); err != nil || res.Status != http.StatusOK {
			t.Fatalf("DEACTIVATION: %v %+v", err, res)
		}
	})

	g.obActivate("4202")
	b, _ = g.signIn("4202", g.user("4202", platformsim.RoleStudent).SourcedID)
	cutOff("deletion", b, func() {
		if res, err := g.sim.Deactivate(g.ctx(), "4202", true); err != nil || res.Status != http.StatusOK {
			t.Fatalf("DELETION: %v %+v", err, res)
		}
	})

	g.obActivate("4203")
	b, _ = g.signIn("4203", g.user("4203", platformsim.RoleAdministrator).SourcedID)
	cutOff("sign-out on the second replica", b, func() {
		if got := b.send(http.MethodPost, second.srv.URL+"/logout", nil, nil); got.status != http.StatusOK {
			t.Fatalf("logout: %d", got.status)
		}
	})
}
