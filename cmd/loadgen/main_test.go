package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStack is a stand-in for the server and the simulator that checks what loadgen sends: the
// flow cookie on the callback, the simulator's user cookie on authorize, the session cookie on
// /api/me. Its cookies are Secure and __Host- prefixed, like the server's.
type fakeStack struct {
	app, sim *httptest.Server
	conns    atomic.Int64 // connections opened to either

	mu       sync.Mutex
	flows    map[string]string // state -> flow id
	codes    map[string]bool
	sessions map[string]bool
	logins   int
	mes      int
	proxied  int
	broken   atomic.Bool // the app refuses every launch
}

var fakeTeachers = []string{"t-1", "t-2", "t-3"}

func newFakeStack(t *testing.T) *fakeStack {
	f := &fakeStack{flows: map[string]string{}, codes: map[string]bool{}, sessions: map[string]bool{}}
	count := func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.sim = httptest.NewUnstartedServer(http.HandlerFunc(f.serveSim))
	f.sim.Config.ConnState = count
	f.sim.Start()
	t.Cleanup(f.sim.Close)
	f.app = httptest.NewUnstartedServer(http.HandlerFunc(f.serveApp))
	f.app.Config.ConnState = count
	f.app.Start()
	t.Cleanup(f.app.Close)
	return f
}

func token() string { return rand.Text() }

func (f *fakeStack) serveSim(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/sim/api/tenants/1001/users" && r.URL.Query().Get("role") == "teacher":
		var out []map[string]string
		for _, id := range fakeTeachers {
			out = append(out, map[string]string{"sourcedId": id, "role": "teacher"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	case r.URL.Path == "/WebUntis/api/sso/v3/1001/authorize":
		c, err := r.Cookie("sim_user_1001")
		if err != nil || !strings.HasPrefix(c.Value, "t-") {
			http.Error(w, "pick a user", http.StatusOK) // the simulator's user picker
			return
		}
		code := token()
		f.mu.Lock()
		f.codes[code] = true
		f.mu.Unlock()
		q := url.Values{"code": {code}, "state": {r.URL.Query().Get("state")}}
		http.Redirect(w, r, r.URL.Query().Get("redirect_uri")+"?"+q.Encode(), http.StatusFound)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeStack) serveApp(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/launch" && q.Has("code"):
		f.mu.Lock()
		defer f.mu.Unlock()
		flowID := f.flows[q.Get("state")]
		delete(f.flows, q.Get("state"))
		c, err := r.Cookie("__Host-untis-flow-" + q.Get("state")[:6])
		if flowID == "" || err != nil || c.Value != flowID || !f.codes[q.Get("code")] {
			http.Error(w, "sign-in could not be completed", http.StatusBadRequest)
			return
		}
		delete(f.codes, q.Get("code"))
		http.SetCookie(w, &http.Cookie{Name: c.Name, Path: "/", Secure: true, HttpOnly: true, MaxAge: -1})
		sid := token()
		f.sessions[sid] = true
		f.logins++
		http.SetCookie(w, &http.Cookie{Name: "__Host-untis-session", Value: sid, Path: "/", Secure: true, HttpOnly: true, MaxAge: 3600})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case r.URL.Path == "/launch":
		if f.broken.Load() || q.Get("tenant_id") != "1001" {
			http.Error(w, "unknown school", http.StatusNotFound)
			return
		}
		state, flowID := token(), token()
		f.mu.Lock()
		f.flows[state] = flowID
		f.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "__Host-untis-flow-" + state[:6], Value: flowID, Path: "/", Secure: true, HttpOnly: true, MaxAge: 600})
		au := f.sim.URL + "/WebUntis/api/sso/v3/1001/authorize?" + url.Values{
			"state": {state}, "redirect_uri": {f.app.URL + "/launch"},
		}.Encode()
		http.Redirect(w, r, au, http.StatusFound)
	case r.URL.Path == "/api/me" || r.URL.Path == "/bench":
		c, err := r.Cookie("__Host-untis-session")
		f.mu.Lock()
		ok := err == nil && f.sessions[c.Value]
		switch {
		case ok && r.URL.Path == "/api/me":
			f.mes++
		case ok:
			f.proxied++
		}
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"not_signed_in"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"tenantId":"1001"}`))
	default:
		http.NotFound(w, r)
	}
}

func TestLoadgenAgainstFakeStack(t *testing.T) {
	t.Parallel()
	f := newFakeStack(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-app", f.app.URL, "-sim", f.sim.URL, "-tenants", "1001",
		"-mode", "both", "-c", "4", "-d", "300ms"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errOut)
	}
	f.mu.Lock()
	logins, mes := f.logins, f.mes
	f.mu.Unlock()
	if logins < 16 || mes == 0 {
		t.Fatalf("the stack saw %d logins and %d /api/me requests\n%s", logins, mes, &out)
	}
	for _, want := range []string{"logins: concurrency 4", "me: concurrency 4", "p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, &out)
		}
	}
	if n := strings.Count(out.String(), "failed 0,"); n != 2 || strings.Contains(out.String(), "×") {
		t.Errorf("failures reported:\n%s", &out)
	}
	// Keep-alive: a handful of connections per worker and host, not one per request.
	if n := f.conns.Load(); n > 4*2*2 {
		t.Errorf("%d connections opened for %d logins and %d requests", n, logins, mes)
	}
}

func TestLoadgenNothingSucceeds(t *testing.T) {
	t.Parallel()
	f := newFakeStack(t)
	f.broken.Store(true)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-app", f.app.URL, "-sim", f.sim.URL, "-tenants", "1001",
		"-mode", "logins", "-c", "2", "-d", "100ms"}, &out, &errOut)
	if code == 0 {
		t.Fatalf("exit 0 although every launch failed:\n%s", &out)
	}
	if !strings.Contains(out.String(), "launch answered 404") || !strings.Contains(errOut.String(), "nothing succeeded") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", &out, &errOut)
	}
}

// The proxied mode sends a session cookie with every GET: one it signed in for, or one it was
// given; the stack must have answered each with the expected status.
func TestLoadgenProxiedMode(t *testing.T) {
	t.Parallel()
	f := newFakeStack(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-app", f.app.URL, "-sim", f.sim.URL, "-tenants", "1001",
		"-mode", "proxied", "-url", f.app.URL + "/bench", "-c", "3", "-sessions", "2", "-d", "200ms"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errOut)
	}
	f.mu.Lock()
	logins, proxied := f.logins, f.proxied
	f.mu.Unlock()
	if logins != 2 || proxied == 0 || !strings.Contains(out.String(), "proxied: concurrency 3") || !strings.Contains(out.String(), "failed 0,") {
		t.Fatalf("%d logins, %d proxied GETs:\n%s", logins, proxied, &out)
	}

	// With -session, no sign-in (the simulator is not even asked) and that cookie is sent.
	sid := token()
	f.mu.Lock()
	f.sessions[sid] = true
	f.mu.Unlock()
	out.Reset()
	code = run(context.Background(), []string{"-sim", "http://127.0.0.1:1", "-mode", "proxied", "-session", sid,
		"-url", f.app.URL + "/bench", "-c", "2", "-d", "100ms"}, &out, &errOut)
	f.mu.Lock()
	logins2, proxied2 := f.logins, f.proxied
	f.mu.Unlock()
	if code != 0 || logins2 != logins || proxied2 == proxied {
		t.Fatalf("with -session: exit %d, %d new logins, %d new GETs:\n%s%s", code, logins2-logins, proxied2-proxied, &out, &errOut)
	}

	// A session the stack does not know: every GET fails with the status it got.
	out.Reset()
	code = run(context.Background(), []string{"-mode", "proxied", "-session", "unknown",
		"-url", f.app.URL + "/bench", "-c", "1", "-d", "50ms"}, &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "answered 401") {
		t.Errorf("unknown session: exit %d:\n%s", code, &out)
	}
}

// The direct mode GETs the URL without any cookie, and "loadgen upstream" is an upstream that
// answers it.
func TestLoadgenDirectModeAgainstItsUpstream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"upstream", "-addr", "127.0.0.1:0"}, stdout, io.Discard) }()
	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" {
		if time.Now().After(deadline) {
			t.Fatalf("the upstream did not say where it listens: %q", stdout.String())
		}
		if _, rest, ok := strings.Cut(stdout.String(), "listening on "); ok {
			base, _, _ = strings.Cut(rest, " ")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Post(base+"/any/path?x=1", "text/plain", strings.NewReader("upload"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("upstream answered %d %q", resp.StatusCode, body)
	}

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-mode", "direct", "-url", base + "/bench", "-c", "2", "-d", "100ms"}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "direct: concurrency 2") || !strings.Contains(out.String(), "failed 0,") {
		t.Errorf("direct: exit %d\n%s%s", code, &out, &errOut)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("upstream exited %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream did not stop")
	}

	// Direct sends no cookie.
	var cookies, requests atomic.Int32
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("Cookie") != "" {
			cookies.Add(1)
		}
	}))
	defer rec.Close()
	if code := run(context.Background(), []string{"-mode", "direct", "-url", rec.URL, "-c", "1", "-d", "50ms"}, &out, &errOut); code != 0 || requests.Load() == 0 || cookies.Load() != 0 {
		t.Errorf("direct: exit %d, %d of %d requests with cookies", code, cookies.Load(), requests.Load())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLoadgenFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-mode", "all"}, {"-tenants", ","}, {"-d", "0s"}, {"-app", "localhost:8080"}, {"extra"},
		{"-mode", "direct", "-url", "ftp://x"}, {"-mode", "direct", "-expect", "42"},
		{"-mode", "proxied", "-session", "a;b"}, {"-mode", "me", "-session", "abc"},
		{"upstream", "extra"}, {"upstream", "-addr"},
	} {

		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := percentile(d, c.q); got != c.want {
			t.Errorf("p%v = %v, want %v", c.q*100, got, c.want)
		}
	}
	if got := percentile(d[:1], 0.99); got != time.Millisecond {
		t.Errorf("p99 of one = %v", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("p50 of none = %v", got)
	}
}

func TestRateLimitedLaunchSaysWhatToSet(t *testing.T) {
	t.Parallel()
	if msg := (&errStatus{"launch", http.StatusTooManyRequests}).Error(); !strings.Contains(msg, "LAUNCH_LIMIT_PER_CLIENT=0") {
		t.Errorf("a 429 says %q", msg)
	}
	if msg := (&errStatus{"launch", http.StatusBadGateway}).Error(); msg != "launch answered 502" {
		t.Errorf("a 502 says %q", msg)
	}
}
