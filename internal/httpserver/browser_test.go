package httpserver_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// TestBrowserSignIn drives a real headless Chromium (Debian's chromium and chromium-driver,
// which .ci/run installs) through the simulator's page: a click on an entry point must end on
// the app's page showing the user's name, once in a new tab and once inside the platform's
// iFrame (embed mode).
//
// Without chromium or chromedriver the test is skipped, unless CI is set: there it fails, so
// that CI cannot pass without running it.
func TestBrowserSignIn(t *testing.T) {
	t.Parallel()
	wd := startWebDriver(t)

	t.Run("new tab", func(t *testing.T) {
		e := newSigninEnv(t, signinOptions{})
		tid := e.school(platformsim.TenantSpec{ID: "4101", Name: "Realschule Ost"}, store.StateActive)
		u := e.user(tid, platformsim.RoleTeacher)
		s := wd.newSession(t)
		defer s.dumpOnFailure(t, e)

		s.launchFromSim(e.simURL, tid, u.SourcedID, platformsim.EntryMainMenu)
		name := u.GivenName + " " + u.FamilyName
		s.waitFor("the app page showing "+name, func() (bool, string) {
			cur, err := s.url()
			s.refused(cur)
			if err != nil || !strings.HasPrefix(cur, e.app.srv.URL+"/") {
				return false, fmt.Sprintf("url %q (%v)", cur, err)
			}
			text, err := s.bodyText()
			return err == nil && strings.Contains(text, name), fmt.Sprintf("url %q, text %q (%v)", cur, text, err)
		})
	})

	t.Run("iframe", func(t *testing.T) {
		e := newSigninEnv(t, signinOptions{embed: true})
		tid := e.school(platformsim.TenantSpec{ID: "4102", Name: "Gesamtschule West"}, store.StateActive)
		u := e.user(tid, platformsim.RoleTeacher)
		s := wd.newSession(t)
		defer s.dumpOnFailure(t, e)

		s.launchFromSim(e.simURL, tid, u.SourcedID, platformsim.EntryMainMenu+":iframe")
		s.waitFor("the simulator's embed page", func() (bool, string) {
			cur, err := s.url()
			return err == nil && strings.HasPrefix(cur, e.simURL+"/sim/embed?"), fmt.Sprintf("url %q (%v)", cur, err)
		})
		frame := s.find("iframe.partner")
		s.must(s.cmd(http.MethodPost, "/frame", map[string]any{"id": frame}, nil))
		name := u.GivenName + " " + u.FamilyName
		s.waitFor("the app in the iFrame showing "+name, func() (bool, string) {
			// The frame's own URL: document.URL inside it.
			var cur string
			err := s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": "return document.URL", "args": []any{}}, &cur)
			s.refused(cur)
			if err != nil || !strings.HasPrefix(cur, e.app.srv.URL+"/") {
				return false, fmt.Sprintf("frame url %q (%v)", cur, err)
			}
			text, err := s.bodyText()
			return err == nil && strings.Contains(text, name), fmt.Sprintf("frame url %q, text %q (%v)", cur, text, err)
		})
		// The top window stayed on the platform's page.
		s.must(s.cmd(http.MethodPost, "/frame/parent", map[string]any{}, nil))
		if cur, err := s.url(); err != nil || !strings.HasPrefix(cur, e.simURL+"/sim/embed?") {
			t.Errorf("top window left the platform: %q (%v)", cur, err)
		}
	})
}

// launchFromSim opens the simulator's home page, picks the user in the school's launch form and
// clicks the entry point's button. The form opens a new tab; the session switches to it.
func (s *wdSession) launchFromSim(simURL, tid, userID, entry string) {
	s.t.Helper()
	s.must(s.cmd(http.MethodPost, "/url", map[string]any{"url": simURL + "/"}, nil))
	form := fmt.Sprintf(`#t-%s form[action="/sim/tenants/%s/launch"]`, tid, tid)
	s.click(s.find(fmt.Sprintf(`%s select[name="user"] option[value="%s"]`, form, userID)))
	var selected string
	s.must(s.cmd(http.MethodGet, "/element/"+s.find(form+` select[name="user"]`).id()+"/property/value", nil, &selected))
	if selected != userID {
		s.t.Fatalf("user select holds %q, want %q", selected, userID)
	}
	var before []string
	s.must(s.cmd(http.MethodGet, "/window/handles", nil, &before))
	s.click(s.find(fmt.Sprintf(`%s button[name="entry"][value="%s"]`, form, entry)))
	var tab string
	s.waitFor("the launch to open a new tab", func() (bool, string) {
		var handles []string
		if err := s.cmd(http.MethodGet, "/window/handles", nil, &handles); err != nil {
			return false, err.Error()
		}
		for _, h := range handles {
			if !contains(before, h) {
				tab = h
				return true, ""
			}
		}
		return false, fmt.Sprintf("windows %v", handles)
	})
	s.must(s.cmd(http.MethodPost, "/window", map[string]any{"handle": tab}, nil))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A minimal W3C WebDriver client: enough of the protocol for these tests, without a module
// dependency.

type webDriver struct {
	base   string
	client *http.Client
	chrome string
	log    *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startWebDriver starts chromedriver on a free port and waits until it is ready; it is stopped
// when the test ends.
func startWebDriver(t *testing.T) *webDriver {
	t.Helper()
	chrome, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	if err := errors.Join(err1, err2); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no headless browser (install Debian's chromium and chromium-driver): %v", err)
		}
		t.Fatalf("CI is set but the browser test cannot run (.ci/run installs chromium and chromium-driver): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	wd := &webDriver{
		base:   "http://127.0.0.1:" + strconv.Itoa(port),
		client: &http.Client{Timeout: 30 * time.Second},
		chrome: chrome,
		log:    &lockedBuffer{},
	}
	cmd := exec.Command(driver, "--port="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = wd.log, wd.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		var st struct {
			Ready bool `json:"ready"`
		}
		err := wd.do(http.MethodGet, "/status", nil, &st)
		if err == nil && st.Ready {
			return wd
		}
		select {
		case err := <-exited:
			t.Fatalf("chromedriver exited (%v):\n%s", err, wd.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver not ready after 10s (%v):\n%s", err, wd.log)
		}
	}
}

// wdError is an error answer of the protocol.
type wdError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *wdError) Error() string {
	return fmt.Sprintf("webdriver %d %s: %s", e.Status, e.Code, e.Message)
}

// do sends one command and decodes the answer's "value" into out (if not nil).
func (wd *webDriver) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, wd.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := wd.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("webdriver %s %s: %d %q", method, path, resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK {
		e := &wdError{Status: resp.StatusCode}
		_ = json.Unmarshal(env.Value, e)
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(env.Value, out)
}

type wdSession struct {
	t  *testing.T
	wd *webDriver
	id string
}

// newSession starts a browser with a fresh profile; it is closed when the test ends.
func (wd *webDriver) newSession(t *testing.T) *wdSession {
	t.Helper()
	return wd.newSessionIn(t, "en-US,en")
}

// newSessionIn starts a browser whose languages (its Accept-Language) are langs.
func (wd *webDriver) newSessionIn(t *testing.T, langs string) *wdSession {
	t.Helper()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": wd.chrome,
			"args": []string{
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
				"--no-first-run", "--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
				"--lang=" + strings.Split(langs, ",")[0], "--accept-lang=" + langs,
			},
			"prefs": map[string]any{"intl.accept_languages": langs},
		},
	}}}
	var created struct {
		SessionID string `json:"sessionId"`
	}
	if err := wd.do(http.MethodPost, "/session", caps, &created); err != nil {
		t.Fatalf("new browser session: %v\n%s", err, wd.log)
	}
	s := &wdSession{t: t, wd: wd, id: created.SessionID}
	// Registered after TempDir's cleanup, so it runs first: the browser is gone before its
	// profile is removed.
	t.Cleanup(func() { _ = wd.do(http.MethodDelete, "/session/"+s.id, nil, nil) })
	s.must(s.cmd(http.MethodPost, "/timeouts", map[string]any{"pageLoad": 15000, "script": 5000, "implicit": 0}, nil))
	return s
}

func (s *wdSession) cmd(method, path string, body, out any) error {
	return s.wd.do(method, "/session/"+s.id+path, body, out)
}

func (s *wdSession) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

// elementKey is the W3C web element identifier.
const elementKey = "element-6066-11e4-a52e-4f735466cecf"

type wdElement map[string]string

func (el wdElement) id() string { return el[elementKey] }

// find returns the element matching a CSS selector, failing the test if there is none.
func (s *wdSession) find(css string) wdElement {
	s.t.Helper()
	var el wdElement
	if err := s.cmd(http.MethodPost, "/element", map[string]any{"using": "css selector", "value": css}, &el); err != nil {
		s.t.Fatalf("find %s: %v", css, err)
	}
	return el
}

func (s *wdSession) click(el wdElement) {
	s.t.Helper()
	s.must(s.cmd(http.MethodPost, "/element/"+el.id()+"/click", map[string]any{}, nil))
}

func (s *wdSession) url() (string, error) {
	var u string
	err := s.cmd(http.MethodGet, "/url", nil, &u)
	return u, err
}

// bodyText is the visible text of the current document (of the current frame).
func (s *wdSession) bodyText() (string, error) {
	var el wdElement
	if err := s.cmd(http.MethodPost, "/element", map[string]any{"using": "css selector", "value": "body"}, &el); err != nil {
		return "", err
	}
	var text string
	err := s.cmd(http.MethodGet, "/element/"+el.id()+"/text", nil, &text)
	return text, err
}

// waitFor polls cond until it holds, for at most 60 s (2-core CI machines under load); then the test fails with cond's last
// description of what it saw.
func (s *wdSession) waitFor(what string, cond func() (bool, string)) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waited 60s for %s; last saw: %s", what, saw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// refused fails the test at once when the browser shows its own error page instead of a
// document (for a frame: the app refused to be framed, by X-Frame-Options or CSP
// frame-ancestors).
func (s *wdSession) refused(url string) {
	s.t.Helper()
	if strings.HasPrefix(url, "chrome-error://") {
		s.t.Fatalf("the browser refused to show the page (%s): a network error, or in a frame X-Frame-Options/frame-ancestors", url)
	}
}

// dumpOnFailure logs, if the test failed, what the browser shows and what the server logged.
func (s *wdSession) dumpOnFailure(t *testing.T, e *signinEnv) {
	if !t.Failed() {
		return
	}
	var frameURL, frameSrc string
	_ = s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": "return document.URL", "args": []any{}}, &frameURL)
	_ = s.cmd(http.MethodGet, "/source", nil, &frameSrc)
	_ = s.cmd(http.MethodPost, "/frame", map[string]any{"id": nil}, nil)
	cur, _ := s.url()
	if frameURL != cur {
		if strings.HasPrefix(frameURL, "chrome-error://") {
			frameSrc = "(the browser's error page)"
		}
		t.Logf("frame at %s:\n%s", frameURL, frameSrc)
	}
	var src string
	_ = s.cmd(http.MethodGet, "/source", nil, &src)
	t.Logf("browser at %s:\n%s", cur, src)
	t.Logf("server log:\n%s", e.logs.String())
}
