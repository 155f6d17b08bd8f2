package httpserver_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// TestBrowserSignOut is what a person sees of signing out, in a real headless Chromium: the
// app's Sign out button must land on the signed-out page, and the browser's Back button after
// signing out must not show the previous user again (a shared school computer).
func TestBrowserSignOut(t *testing.T) {
	t.Parallel()
	wd := startWebDriver(t)

	t.Run("the Sign out button shows the signed-out page", func(t *testing.T) {
		t.Parallel()
		e := newSigninEnv(t, signinOptions{})
		tid := e.school(platformsim.TenantSpec{ID: "4201", Name: "Realschule Ost"}, store.StateActive)
		u := e.user(tid, platformsim.RoleTeacher)
		s := wd.newSession(t)
		defer s.dumpOnFailure(t, e)
		name := u.GivenName + " " + u.FamilyName

		s.launchFromSim(e.simURL, tid, u.SourcedID, platformsim.EntryMainMenu)
		s.waitPage("the app page showing "+name, e.app.srv.URL+"/", name)
		s.click(s.find(`form[action="/logout"] button`))
		s.waitPage("the signed-out page", e.app.srv.URL+"/logout", "You are signed out")
		if body, _ := s.bodyText(); strings.Contains(body, name) {
			t.Errorf("the signed-out page still names %s: %q", name, body)
		}
		if n := e.countRows("sessions"); n != 0 {
			t.Errorf("%d sessions left after signing out", n)
		}
		// Reloading the app shows nobody.
		s.open(e.app.srv.URL + "/")
		s.waitPage("the app without a session", e.app.srv.URL+"/", "Open this app from Untis")
	})

	t.Run("Back after signing out does not show the user", func(t *testing.T) {
		t.Parallel()
		e := newSigninEnv(t, signinOptions{})
		tid := e.school(platformsim.TenantSpec{ID: "4202", Name: "Gesamtschule West"}, store.StateActive)
		u := e.user(tid, platformsim.RoleStudent)
		s := wd.newSession(t)
		defer s.dumpOnFailure(t, e)
		name := u.GivenName + " " + u.FamilyName

		s.launchFromSim(e.simURL, tid, u.SourcedID, platformsim.EntryMainMenu)
		s.waitPage("the app page showing "+name, e.app.srv.URL+"/", name)
		// A mark in the page's JavaScript state: it survives only if the browser restores the
		// page from its back/forward cache instead of loading it again.
		s.must(s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": "window.restoredMark = 1; return null", "args": []any{}}, nil))
		s.click(s.find(`form[action="/logout"] button`))
		s.waitFor("the sign-out to reach the server", func() (bool, string) {
			n := e.countRows("sessions")
			return n == 0, fmt.Sprintf("%d sessions", n)
		})

		s.must(s.cmd(http.MethodPost, "/back", map[string]any{}, nil))
		s.waitFor("Back to show the app without "+name, func() (bool, string) {
			cur, err := s.url()
			if err != nil || cur != e.app.srv.URL+"/" {
				return false, fmt.Sprintf("url %q (%v)", cur, err)
			}
			body, err := s.bodyText()
			if err != nil {
				return false, err.Error()
			}
			var restored any
			_ = s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": "return window.restoredMark || null", "args": []any{}}, &restored)
			if strings.Contains(body, name) || restored != nil {
				// Fail at once: the browser shows the previous user's page (the one it kept, in
				// its back/forward cache or because it never left it); waiting changes nothing.
				t.Fatalf("Back after signing out shows %s's page (the same page, not loaded anew: %v): %q", name, restored != nil, body)
			}
			return strings.Contains(body, "Open this app from Untis"), fmt.Sprintf("url %q, text %q", cur, body)
		})
	})
}

// TestBrowserEmbedModeSwitch redeploys the server in the other EMBED_MODE while a browser holds
// the previous mode's session cookie (SameSite=Lax, or SameSite=None; Partitioned: to the
// browser two different cookies of the same name). The next launch must sign the user in, in
// either direction.
func TestBrowserEmbedModeSwitch(t *testing.T) {
	t.Parallel()
	wd := startWebDriver(t)
	for _, c := range []struct {
		name          string
		before, after bool // embed mode
	}{
		{"new tab, then iFrame", false, true},
		{"iFrame, then new tab", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newSigninEnv(t, signinOptions{embed: c.before})
			tid := e.school(platformsim.TenantSpec{ID: "4203", Name: "Volksschule Süd"}, store.StateActive)
			first := e.user(tid, platformsim.RoleTeacher)
			second := e.user(tid, platformsim.RoleStudent)
			s := wd.newSession(t)
			defer s.dumpOnFailure(t, e)

			s.launchAndSee(e, tid, first, c.before)
			e.restart(c.after)
			s.launchAndSee(e, tid, second, c.after)
			// And the app keeps working on the next page load.
			s.launchAndSee(e, tid, first, c.after)
		})
	}
}

// launchAndSee launches the app from the simulator as user, in the platform's iFrame or in a
// new tab, and waits until the app shows the user's name.
func (s *wdSession) launchAndSee(e *signinEnv, tid string, u platformsim.User, iframe bool) {
	s.t.Helper()
	name := u.GivenName + " " + u.FamilyName
	if !iframe {
		s.launchFromSim(e.simURL, tid, u.SourcedID, platformsim.EntryMainMenu)
		s.waitPage("the app page showing "+name, e.app.srv.URL+"/", name)
		return
	}
	s.launchFromSim(e.simURL, tid, u.SourcedID, platformsim.EntryMainMenu+":iframe")
	s.waitFor("the simulator's embed page", func() (bool, string) {
		cur, err := s.url()
		return err == nil && strings.HasPrefix(cur, e.simURL+"/sim/embed?"), fmt.Sprintf("url %q (%v)", cur, err)
	})
	s.must(s.cmd(http.MethodPost, "/frame", map[string]any{"id": s.find("iframe.partner")}, nil))
	defer func() { _ = s.cmd(http.MethodPost, "/frame", map[string]any{"id": nil}, nil) }()
	s.waitFor("the app in the iFrame showing "+name, func() (bool, string) {
		var cur string
		err := s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": "return document.URL", "args": []any{}}, &cur)
		s.refused(cur)
		if err != nil || cur != e.app.srv.URL+"/" {
			return false, fmt.Sprintf("frame url %q (%v)", cur, err)
		}
		text, err := s.bodyText()
		return err == nil && strings.Contains(text, name), fmt.Sprintf("frame url %q, text %q (%v)", cur, text, err)
	})
}

// TestBrowserIFrameOutsideEmbedMode: the simulator's iFrame entry point, with the server outside
// embed mode (which forbids every frame), must not show a broken frame: the simulator asks the
// partner, says why the iFrame cannot open and how to start embed mode, and offers the same
// launch in a new tab, which signs the user in.
func TestBrowserIFrameOutsideEmbedMode(t *testing.T) {
	t.Parallel()
	wd := startWebDriver(t)
	e := newSigninEnv(t, signinOptions{})
	tid := e.school(platformsim.TenantSpec{ID: "4204", Name: "Hauptschule Mitte"}, store.StateActive)
	u := e.user(tid, platformsim.RoleTeacher)
	s := wd.newSession(t)
	defer s.dumpOnFailure(t, e)

	s.launchFromSim(e.simURL, tid, u.SourcedID, platformsim.EntryMainMenu+":iframe")
	s.waitFor("the simulator's explanation", func() (bool, string) {
		cur, err := s.url()
		if err != nil || !strings.HasPrefix(cur, e.simURL+"/sim/embed?") {
			return false, fmt.Sprintf("url %q (%v)", cur, err)
		}
		text, err := s.text(`[data-testid="frame-refused"]`)
		return err == nil, fmt.Sprintf("url %q, explanation %q (%v)", cur, text, err)
	})
	text := s.textOf(`[data-testid="frame-refused"]`)
	for _, want := range []string{"does not allow being shown in an iFrame", "frame-ancestors 'none'", "EMBED_MODE=true", "make run"} {
		if !strings.Contains(text, want) {
			t.Errorf("the explanation lacks %q: %q", want, text)
		}
	}
	var frames []wdElement
	s.must(s.cmd(http.MethodPost, "/elements", map[string]any{"using": "css selector", "value": "iframe"}, &frames))
	if len(frames) != 0 {
		t.Errorf("the page still shows %d frame(s)", len(frames))
	}

	var before []string
	s.must(s.cmd(http.MethodGet, "/window/handles", nil, &before))
	s.click(s.find(`[data-testid="frame-refused"] a[target="_blank"]`))
	s.waitFor("the new tab", func() (bool, string) {
		var handles []string
		_ = s.cmd(http.MethodGet, "/window/handles", nil, &handles)
		for _, h := range handles {
			if !contains(before, h) {
				s.must(s.cmd(http.MethodPost, "/window", map[string]any{"handle": h}, nil))
				return true, ""
			}
		}
		return false, fmt.Sprintf("windows %v", handles)
	})
	name := u.GivenName + " " + u.FamilyName
	s.waitPage("the app in the new tab showing "+name, e.app.srv.URL+"/", name)
}
