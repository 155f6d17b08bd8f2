package httpserver_test

import (
	"strings"
	"testing"

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
