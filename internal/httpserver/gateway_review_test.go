package httpserver_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// A client cannot tell the app a client address, port, path prefix, scheme or path of its own
// through the forwarding headers that frameworks read besides X-Forwarded-For, -Host and -Proto
// (chi's RealIP reads True-Client-Ip and X-Real-Ip first, Rails Client-Ip, Spring and ASP.NET
// X-Forwarded-Port and -Prefix, Rack X-Forwarded-Ssl and -Scheme, IIS X-Original-Url), on a
// signed-in request or a public one.
func TestGatewayPassesNoForwardingHeaderAClientWrote(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{public: "/assets/"})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3351"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleStudent).SourcedID)
	session := b.cookie("__Host-untis-session")
	forged := "X-Real-Ip: 6.6.6.6\r\nTrue-Client-Ip: 6.6.6.6\r\nX-Client-Ip: 6.6.6.6\r\nClient-Ip: 6.6.6.6\r\n" +
		"X-Cluster-Client-Ip: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nx-real-ip: 6.6.6.6\r\n" +
		"X-Forwarded-Port: 8443\r\nX-Forwarded-Prefix: /evil\r\nX-Forwarded-Server: evil.example\r\n" +
		"X-Forwarded-Ssl: on\r\nX-Forwarded-Scheme: https\r\nX-Forwarded-Uri: /admin\r\n" +
		"X-Original-Url: /admin\r\nX-Rewrite-Url: /admin\r\nX_Forwarded_Port: 8443\r\n"
	for _, path := range []string{"/private", "/assets/app.css"} {
		before := g.up.hits.Load()
		status := rawRequest(t, base, "GET "+path+" HTTP/1.1\r\nHost: "+strings.TrimPrefix(base, "http://")+"\r\n"+
			"Cookie: __Host-untis-session="+session+"\r\n"+forged+"Connection: close\r\n\r\n")
		if status != 200 || g.up.hits.Load() != before+1 {
			t.Fatalf("%s: status %d", path, status)
		}
		seen := g.up.last(t)
		for name, v := range seen.Header {
			for _, x := range v {
				if strings.Contains(x, "6.6.6.6") || strings.Contains(x, "evil") || x == "8443" || x == "/admin" || x == "on" || x == "https" {
					t.Errorf("%s: the app got the client's %s: %q", path, name, x)
				}
			}
		}
		if got := seen.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For %q", path, got)
		}
	}
}

// tunnelApp is an app server that accepts any protocol upgrade (as Jetty and Hypercorn accept
// h2c): it answers 101 and then serves the requests that come through the tunnel, reporting the
// X-Untis-Role each one carried.
func tunnelApp(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var upgrades atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto := r.Header.Get("Upgrade")
		if proto != "" {
			upgrades.Add(1)
		} else if strings.HasSuffix(r.URL.Path, "/switch-anyway") {
			proto = "h2c" // an app that switches without being asked
		} else {
			fmt.Fprintf(w, "plain role=%q", r.Header.Get("X-Untis-Role"))
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", proto)
		_ = brw.Flush()
		for {
			inner, err := http.ReadRequest(brw.Reader)
			if err != nil {
				return
			}
			body := fmt.Sprintf("tunnel %s role=%q", inner.URL.Path, inner.Header.Get("X-Untis-Role"))
			fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			_ = brw.Flush()
		}
	}))
	t.Cleanup(app.Close)
	return app, &upgrades
}

// Only a WebSocket upgrade passes the gateway. Any other (h2c above all) would open a tunnel to
// the app in which every further request bypasses the gateway: no session check, and identity
// headers of the client's choosing (h2c request smuggling). Such a request goes to the app as a
// plain request, and an app that switches protocols anyway gets no tunnel.
func TestGatewayOpensNoTunnelButAWebSocket(t *testing.T) {
	t.Parallel()
	app, upgrades := tunnelApp(t)
	g := newGatewayEnv(t, gatewayOptions{public: "/assets/", upstreamURL: app.URL})
	base := g.app.srv.URL
	u, _ := url.Parse(base)
	tid := g.school(platformsim.TenantSpec{ID: "3352"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleStudent).SourcedID)
	session := b.cookie("__Host-untis-session")
	for _, tc := range []struct{ name, path, cookie, upgrade string }{
		{"anonymous, a public path, h2c", "/assets/x", "", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"anonymous, a public path, h2c, settings not hop-by-hop", "/assets/x", "", "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"anonymous, an app that switches anyway", "/assets/switch-anyway", "", "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"a student, h2c", "/private", "Cookie: __Host-untis-session=" + session + "\r\n", "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"a student, a made-up protocol", "/private", "Cookie: __Host-untis-session=" + session + "\r\n", "Connection: upgrade\r\nUpgrade: tunnel/1\r\n"},
		{"a student, websocket listed with another", "/private", "Cookie: __Host-untis-session=" + session + "\r\n", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n"},
	} {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: "+u.Host+"\r\n"+tc.cookie+tc.upgrade+"\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			_, _ = io.WriteString(c, "GET /admin-only HTTP/1.1\r\nHost: x\r\nX-Untis-Role: administrator\r\n\r\n")
			inner, err := http.ReadResponse(br, nil)
			var got []byte
			if err == nil {
				got, _ = io.ReadAll(inner.Body)
			}
			t.Errorf("%s: the gateway switched protocols; through the tunnel the app answered %q", tc.name, got)
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		c.Close()
	}
	if n := upgrades.Load(); n != 0 {
		t.Errorf("the app was asked to switch protocols %d times", n)
	}
}

// The shipped nginx configuration passes WebSocket upgrades to the app, and no other: an h2c
// upgrade that nginx passed on would give a signed-in user a tunnel to the app, past
// auth_request, in which every request carries identity headers of the user's choosing.
func TestNginxPassesOnlyWebSocketUpgrades(t *testing.T) {
	t.Parallel()
	app, upgrades := tunnelApp(t)
	g := newGatewayEnv(t, gatewayOptions{forwardAuthOnly: true})
	nginx := startNginx(t, g.app.srv.URL, app.URL)
	tid := g.school(platformsim.TenantSpec{ID: "4351"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleStudent).SourcedID)
	session := b.cookie("__Host-untis-session")
	nu, _ := url.Parse(nginx)
	try := func(upgrade string) int {
		c, err := net.Dial("tcp", nu.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.WriteString(c, "GET /private HTTP/1.1\r\nHost: "+nu.Host+"\r\nCookie: __Host-untis-session="+session+"\r\n"+upgrade+"\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", upgrade, err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols && strings.Contains(upgrade, "h2c") {
			_, _ = io.WriteString(c, "GET /admin-only HTTP/1.1\r\nHost: x\r\nX-Untis-Role: administrator\r\n\r\n")
			if inner, err := http.ReadResponse(br, nil); err == nil {
				got, _ := io.ReadAll(inner.Body)
				t.Errorf("nginx switched to h2c; through the tunnel the app answered %q", got)
			}
		}
		return resp.StatusCode
	}
	for _, up := range []string{
		"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
		"Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
		"Connection: Upgrade\r\nUpgrade: tunnel/1\r\n",
	} {
		if status := try(up); status == http.StatusSwitchingProtocols {
			t.Errorf("%q: nginx switched protocols", up)
		}
	}
	if n := upgrades.Load(); n != 0 {
		t.Errorf("the app was asked to switch protocols %d times", n)
	}
	// A WebSocket still passes.
	if status := try("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"); status != http.StatusSwitchingProtocols || upgrades.Load() != 1 {
		t.Errorf("a WebSocket through nginx: %d, the app saw %d upgrades", status, upgrades.Load())
	}
}

// In embed mode the session cookie is SameSite=None, so a browser sends it with a form that
// another site posts to the app (top-level, after a sign-in in a new tab): the app must never
// receive such a request with the user's identity. Requests of the app's own pages
// (same-origin), of sibling sites (same-site), scripts without Sec-Fetch-Site and reads from
// anywhere pass as before.
func TestGatewayRefusesAnotherSitesWritesWithTheUsersIdentity(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{embed: true})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3353"}, store.StateActive)
	b, landed := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	if landed.status != http.StatusOK {
		t.Fatalf("sign-in landed on %d", landed.status)
	}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	with := func(kv ...string) http.Header {
		h := form.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		before := g.up.hits.Load()
		got := b.send(method, base+"/grades/7", strings.NewReader("grade=1"), with("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Origin", "https://evil.example"))
		if got.status != http.StatusForbidden || !strings.Contains(got.body, `"cross_site"`) {
			t.Errorf("%s from another site: %d %s", method, got.status, got.body)
		}
		if g.up.hits.Load() != before {
			t.Errorf("%s from another site reached the app", method)
		}
	}
	before := g.up.hits.Load()
	ws := b.send(http.MethodGet, base+"/ws", nil, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"websocket"}, "Origin": {"https://evil.example"}})
	if ws.status != http.StatusForbidden || g.up.hits.Load() != before {
		t.Errorf("a WebSocket from another site: %d %s", ws.status, ws.body)
	}
	for _, tc := range []struct {
		name, method string
		header       http.Header
	}{
		{"the app's own form", http.MethodPost, with("Sec-Fetch-Site", "same-origin", "Origin", base)},
		{"a sibling site's fetch", http.MethodPost, with("Sec-Fetch-Site", "same-site", "Origin", "https://cdn.example")},
		{"a script without Sec-Fetch-Site", http.MethodPost, form},
		{"the user typing the address", http.MethodPost, with("Sec-Fetch-Site", "none")},
		{"a link from another site", http.MethodGet, with("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate")},
	} {
		before := g.up.hits.Load()
		got := b.send(tc.method, base+"/grades/7", strings.NewReader("grade=1"), tc.header)
		if got.status != http.StatusOK || g.up.hits.Load() != before+1 {
			t.Errorf("%s: %d %s", tc.name, got.status, got.body)
		}
	}
}

// Forward-auth refuses another site's writes as the gateway does: directly (the method named
// by X-Forwarded-Method, as Traefik and Caddy send it) and through the shipped nginx.conf.
func TestForwardAuthRefusesAnotherSitesWrites(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{forwardAuthOnly: true, embed: true})
	nginx := startNginx(t, g.app.srv.URL, g.up.srv.URL)
	tid := g.school(platformsim.TenantSpec{ID: "4352"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	cookie := http.Header{"Cookie": {"__Host-untis-session=" + b.cookie("__Host-untis-session")}}
	ask := func(h http.Header) int {
		req, _ := http.NewRequest(http.MethodGet, g.app.srv.URL+"/_untis/auth", nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	h := cookie.Clone()
	h.Set("Sec-Fetch-Site", "cross-site")
	if got := ask(h); got != http.StatusOK {
		t.Errorf("a cross-site read: %d", got)
	}
	h.Set("X-Forwarded-Method", http.MethodPost)
	if got := ask(h); got != http.StatusForbidden {
		t.Errorf("a cross-site POST: %d", got)
	}
	h.Set("Sec-Fetch-Site", "same-origin")
	if got := ask(h); got != http.StatusOK {
		t.Errorf("a same-origin POST: %d", got)
	}

	nu, _ := url.Parse(nginx)
	before := g.up.hits.Load()
	status := rawRequest(t, nginx, "POST /grades/7 HTTP/1.1\r\nHost: "+nu.Host+"\r\n"+
		"Cookie: __Host-untis-session="+b.cookie("__Host-untis-session")+"\r\nSec-Fetch-Site: cross-site\r\n"+
		"Origin: https://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\ngrade=1")
	if status != http.StatusForbidden || g.up.hits.Load() != before {
		t.Errorf("a cross-site POST through nginx: %d, the app got %d requests", status, g.up.hits.Load()-before)
	}
	status = rawRequest(t, nginx, "POST /grades/7 HTTP/1.1\r\nHost: "+nu.Host+"\r\n"+
		"Cookie: __Host-untis-session="+b.cookie("__Host-untis-session")+"\r\nSec-Fetch-Site: same-origin\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\ngrade=1")
	if status != http.StatusOK || g.up.hits.Load() != before+1 {
		t.Errorf("a same-origin POST through nginx: %d", status)
	}
}
