package httpserver_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/untis-partner/server/internal/exampleapp"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// TestBrowserSignInToTheExampleApp is the whole product shape in a real headless Chromium: a
// click on an entry point in the simulator signs the user in and ends on the example partner
// app's page (internal/exampleapp, the app of `make run`) behind the server in gateway mode,
// showing the user's name and that the app verified X-Untis-Identity against the server's JWKS;
// the app's WebSocket echo greets the user through the gateway. Once in a new tab (then the
// app's Sign out ends the session and the app is no longer reachable), once inside the
// platform's iFrame (embed mode).
func TestBrowserSignInToTheExampleApp(t *testing.T) {
	t.Parallel()
	wd := startWebDriver(t)

	t.Run("new tab", func(t *testing.T) {
		t.Parallel()
		g, app := newExampleAppEnv(t, false)
		tid := g.school(platformsim.TenantSpec{ID: "4301", Name: "Gymnasium Süd"}, store.StateActive)
		u := g.user(tid, platformsim.RoleTeacher)
		s := wd.newSession(t)
		defer s.dumpOnFailure(t, g.signinEnv)

		s.launchFromSim(g.simURL, tid, u.SourcedID, platformsim.EntryMainMenu)
		s.waitForExampleApp(g, u)

		// The app's Sign out is the server's /logout: the session ends, and the app's pages are
		// the server's "open this app from Untis" page from then on.
		hits := app.hits.Load()
		s.click(s.find("#person a.button"))
		s.waitFor("the signed-out page", func() (bool, string) {
			text, err := s.bodyText()
			return err == nil && strings.Contains(text, "You are signed out"), fmt.Sprintf("text %q (%v)", text, err)
		})
		s.must(s.cmd(http.MethodPost, "/url", map[string]any{"url": g.app.srv.URL + "/"}, nil))
		if text, err := s.bodyText(); err != nil || !strings.Contains(text, "Open this app from Untis") {
			t.Errorf("after sign-out / shows %q (%v)", text, err)
		}
		if n := app.hits.Load(); n != hits {
			t.Errorf("the example app received %d requests after the sign-out", n-hits)
		}
	})

	t.Run("iframe", func(t *testing.T) {
		t.Parallel()
		g, _ := newExampleAppEnv(t, true)
		tid := g.school(platformsim.TenantSpec{ID: "4302", Name: "Realschule Nord"}, store.StateActive)
		u := g.user(tid, platformsim.RoleStudent)
		s := wd.newSession(t)
		defer s.dumpOnFailure(t, g.signinEnv)

		s.launchFromSim(g.simURL, tid, u.SourcedID, platformsim.EntryMainMenu+":iframe")
		s.waitFor("the simulator's embed page", func() (bool, string) {
			cur, err := s.url()
			return err == nil && strings.HasPrefix(cur, g.simURL+"/sim/embed?"), fmt.Sprintf("url %q (%v)", cur, err)
		})
		s.must(s.cmd(http.MethodPost, "/frame", map[string]any{"id": s.find("iframe.partner")}, nil))
		s.waitForExampleApp(g, u)
		// The top window stayed on the platform's page.
		s.must(s.cmd(http.MethodPost, "/frame/parent", map[string]any{}, nil))
		if cur, err := s.url(); err != nil || !strings.HasPrefix(cur, g.simURL+"/sim/embed?") {
			t.Errorf("top window left the platform: %q (%v)", cur, err)
		}
	})
}

// exampleApp is the example partner app on its own address, as `make run` starts it.
type exampleApp struct {
	srv  *httptest.Server
	hits atomic.Int64
}

// newExampleAppEnv runs the example app behind a gateway-mode server. The app is told the
// gateway's public URL as issuer and nothing else: the gateway's defaults (aud = PUBLIC_URL, the
// JWKS at PUBLIC_URL/.well-known/jwks.json) must be what it expects.
func newExampleAppEnv(t *testing.T, embed bool) (*gatewayEnv, *exampleApp) {
	t.Helper()
	app := &exampleApp{}
	var handler atomic.Pointer[http.Handler]
	app.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app.hits.Add(1)
		(*handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(app.srv.Close)
	g := newGatewayEnv(t, gatewayOptions{upstreamURL: app.srv.URL, public: "/public/", embed: embed})
	h, err := exampleapp.New(exampleapp.Config{Issuer: g.app.srv.URL, Logger: g.log})
	if err != nil {
		t.Fatal(err)
	}
	handler.Store(&h)
	return g, app
}

// waitForExampleApp waits until the current document (of the current frame) is the example
// app's page, reached through the gateway, showing u with a verified identity, and its WebSocket
// echo has greeted u.
func (s *wdSession) waitForExampleApp(g *gatewayEnv, u platformsim.User) {
	s.t.Helper()
	name := u.GivenName + " " + u.FamilyName
	s.waitFor("the example app showing "+name+" with a verified identity", func() (bool, string) {
		var cur string
		err := s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": "return document.URL", "args": []any{}}, &cur)
		s.refused(cur)
		if err != nil || !strings.HasPrefix(cur, g.app.srv.URL+"/") {
			return false, fmt.Sprintf("url %q (%v)", cur, err)
		}
		text, err := s.bodyText()
		ok := err == nil && strings.Contains(text, "Example partner app") && strings.Contains(text, name) &&
			strings.Contains(text, "✓ identity verified") && strings.Contains(text, "Connected as "+name)
		return ok, fmt.Sprintf("url %q, text %q (%v)", cur, text, err)
	})
	if text, _ := s.bodyText(); strings.Contains(text, "say something else") {
		s.t.Errorf("the app found headers that disagree with the verified token:\n%s", text)
	}
}
