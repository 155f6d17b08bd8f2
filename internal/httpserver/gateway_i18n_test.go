package httpserver_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// germanPage checks that a page of the server is German (lang and the heading's words) and
// styled in gateway mode: its style sheet, icon and accent colour are the server's own, under
// /_untis/, never the app's /static/ or /favicon.ico.
func germanPage(t *testing.T, name string, got answer, status int, heading string) {
	t.Helper()
	if got.status != status || !strings.Contains(got.body, `<html lang="de">`) || !strings.Contains(got.body, heading) ||
		got.header.Get("Content-Language") != "de" || got.header.Get("Content-Security-Policy") == "" {
		t.Errorf("%s: %d, want %d with %q in German:\n%s", name, got.status, status, heading, got.body)
	}
	for _, link := range []string{`<link rel="stylesheet" href="/_untis/static/app.css">`, `<link rel="icon" href="/_untis/favicon.svg" type="image/svg+xml">`} {
		if !strings.Contains(got.body, link) {
			t.Errorf("%s: no %s", name, link)
		}
	}
	if strings.Contains(got.body, `"/static/`) || strings.Contains(got.body, `"/favicon.ico"`) {
		t.Errorf("%s links a path of the app:\n%s", name, got.body)
	}
}

// In gateway mode the pages the server answers itself speak the reader's language, are styled by
// the server's own files under /_untis/ (which never reach the app), and the language switch
// works and comes back to the app's path; /favicon.ico is the app's.
func TestGatewayPagesInTheReadersLanguage(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{brand: httpserver.Branding{Name: "Klassenbuch Plus", Accent: "#aa00cc"}})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3801"}, store.StateActive)
	pending := g.school(platformsim.TenantSpec{ID: "3802"}, store.StatePendingSetup)

	anon := g.browser()
	anon.lang = "de-AT,de;q=0.9,en;q=0.5"
	got := anon.get(base + "/lessons/7")
	germanPage(t, "anonymous", got, http.StatusUnauthorized, "Öffnen Sie diese App aus Untis")
	if !strings.Contains(got.body, `<link rel="stylesheet" href="/_untis/theme.css">`) || !strings.Contains(got.body, "<title>Öffnen Sie diese App aus Untis – Klassenbuch Plus</title>") {
		t.Errorf("the anonymous page lacks the branding:\n%s", got.body)
	}
	// Scripts keep their stable JSON.
	if got := anon.do(http.MethodGet, base+"/api/x", http.Header{"Accept": {"application/json"}}); got.status != http.StatusUnauthorized ||
		!strings.Contains(got.body, `"not_signed_in"`) {
		t.Errorf("anonymous JSON: %d %s", got.status, got.body)
	}

	// The server's own files: the styles, the accent colour and the icon (not cached: the
	// back/forward cache fix), none of them the app's.
	hits := g.up.hits.Load()
	for p, want := range map[string]string{"/_untis/static/app.css": "text/css", "/_untis/theme.css": "text/css", "/_untis/favicon.svg": "image/svg+xml"} {
		got := anon.get(base + p)
		if got.status != http.StatusOK || !strings.HasPrefix(got.header.Get("Content-Type"), want) {
			t.Errorf("%s = %d %q", p, got.status, got.header.Get("Content-Type"))
		}
		if p == "/_untis/favicon.svg" && got.header.Get("Cache-Control") != "no-store" {
			t.Errorf("the icon's Cache-Control %q", got.header.Get("Cache-Control"))
		}
	}
	if got := anon.get(base + "/_untis/theme.css"); !strings.Contains(got.body, "--accent: #aa00cc;") {
		t.Errorf("theme.css %q", got.body)
	}

	// The language switch: a cookie of the server's, and back to the app's path.
	sw := anon.get(base + "/_untis/lang?to=en&return=" + url.QueryEscape("/lessons/7"))
	if sw.status != http.StatusSeeOther || sw.location != base+"/lessons/7" || anon.cookie("__Host-untis-lang") != "en" {
		t.Errorf("language switch: %d to %q, cookie %q", sw.status, sw.location, anon.cookie("__Host-untis-lang"))
	}
	if got := anon.get(base + "/lessons/7"); !strings.Contains(got.body, `<html lang="en">`) || !strings.Contains(got.body, "Open this app from Untis") {
		t.Errorf("after switching to English:\n%s", got.body)
	}
	if !strings.Contains(got.body, `href="/_untis/lang?to=en&amp;return=%2Flessons%2F7"`) {
		t.Errorf("the German page's switch does not come back to the app's path:\n%s", got.body)
	}
	if g.up.hits.Load() != hits {
		t.Errorf("%d of the server's own requests reached the app", g.up.hits.Load()-hits)
	}

	// A school being set up: its administrator's page in German, with the way to the setup.
	admin := g.browser()
	admin.lang = "de-CH"
	admin.signInAs(pending, g.user(pending, platformsim.RoleAdministrator).SourcedID)
	admin.follow(base + "/launch?" + launchQuery(pending).Encode())
	got = admin.get(base + "/")
	germanPage(t, "pending", got, http.StatusForbidden, "Ihre Schule wird gerade eingerichtet")
	if !strings.Contains(got.body, `href="/setup"`) {
		t.Errorf("the pending school's admin has no way to the setup:\n%s", got.body)
	}

	// Signed in, the app's /favicon.ico is the app's.
	teacher, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	if got := teacher.get(base + "/favicon.ico"); got.status != http.StatusOK || got.body != "app page /favicon.ico" {
		t.Errorf("/favicon.ico in gateway mode = %d %q, want the app's", got.status, got.body)
	}
}

// The gateway's own answers when the app fails are German for a German reader; scripts get
// the stable JSON codes.
func TestGatewayUpstreamFailurePagesInGerman(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	g := newGatewayEnv(t, gatewayOptions{upstreamURL: "http://" + addr})
	tid := g.school(platformsim.TenantSpec{ID: "3811"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	b.lang = "de-AT"
	germanPage(t, "502", b.get(g.app.srv.URL+"/x"), http.StatusBadGateway, "Die App ist nicht erreichbar")
	got := b.do(http.MethodGet, g.app.srv.URL+"/x", http.Header{"Accept": {"application/json"}})
	var e struct{ Error, Message string }
	if got.status != http.StatusBadGateway || json.Unmarshal([]byte(got.body), &e) != nil || e.Error != "upstream_unavailable" {
		t.Errorf("502 JSON: %d %s", got.status, got.body)
	}
}

// Forward-auth: a person's navigation that the ingress hands the 401 of gets the page in their
// language, whose switch comes back to the page they asked the ingress for; an ingress's or a
// script's request gets the short plain text.
func TestForwardAuthPagesForPeople(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{forwardAuthOnly: true})
	base := g.app.srv.URL
	pending := g.school(platformsim.TenantSpec{ID: "3821"}, store.StatePendingSetup)
	nav := http.Header{"Accept": {"text/html,application/xhtml+xml,*/*;q=0.8"}, "Sec-Fetch-Mode": {"navigate"},
		"X-Forwarded-Uri": {"/timetable?week=12"}}

	anon := g.browser()
	anon.lang = "de-AT"
	got := anon.do(http.MethodGet, base+"/_untis/auth", nav)
	germanPage(t, "forward-auth, anonymous", got, http.StatusUnauthorized, "Öffnen Sie diese App aus Untis")
	if !strings.Contains(got.body, `href="/_untis/lang?to=en&amp;return=%2Ftimetable%3Fweek%3D12"`) || len(untisHeaders(got.header)) != 0 {
		t.Errorf("forward-auth page: the switch does not return to the page asked for:\n%s", got.body)
	}
	// nginx's name for it; an off-site address is never a return path.
	for _, tc := range []struct{ header, value, want string }{
		{"X-Original-URI", "/lessons/3", "%2Flessons%2F3"},
		{"X-Forwarded-Uri", "//evil.example/x", "%2F"},
		{"X-Forwarded-Uri", "https://evil.example/x", "%2F"},
	} {
		got := anon.do(http.MethodGet, base+"/_untis/auth", http.Header{"Accept": {"text/html"}, tc.header: {tc.value}})
		if !strings.Contains(got.body, `&amp;return=`+tc.want+`"`) {
			t.Errorf("%s %s: the switch does not return to %s:\n%s", tc.header, tc.value, tc.want, got.body)
		}
	}
	for name, h := range map[string]http.Header{
		"an ingress's check": nil,
		"a script":           {"Accept": {"text/html"}, "Sec-Fetch-Mode": {"cors"}},
		"JSON":               {"Accept": {"application/json"}},
	} {
		got := anon.do(http.MethodGet, base+"/_untis/auth", h)
		if got.status != http.StatusUnauthorized || got.body != "Not signed in: open this app from Untis.\n" {
			t.Errorf("%s: %d %q", name, got.status, got.body)
		}
	}

	pb, _ := g.signIn(pending, g.user(pending, platformsim.RoleTeacher).SourcedID)
	pb.lang = "de"
	got = pb.do(http.MethodGet, base+"/_untis/auth", nav)
	germanPage(t, "forward-auth, pending", got, http.StatusUnauthorized, "Ihre Schule wird gerade eingerichtet")
	if len(untisHeaders(got.header)) != 0 {
		t.Errorf("a pending school's page carries identity headers: %v", got.header)
	}
	if got := pb.get(base + "/_untis/auth"); got.status != http.StatusUnauthorized || !strings.HasPrefix(got.body, "Your school is still being set up") {
		t.Errorf("pending, plain: %d %q", got.status, got.body)
	}
	if g.up.hits.Load() != 0 {
		t.Error("something reached the (unconfigured) upstream")
	}
}
