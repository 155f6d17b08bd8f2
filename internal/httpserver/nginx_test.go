package httpserver_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// startNginx runs a real nginx (Debian's) with the shipped forward-auth configuration,
// examples/forward-auth/nginx.conf, pointed at the server and the app under test. Without nginx
// the test is skipped, unless CI is set: there it fails (.ci/run installs nginx).
func startNginx(t *testing.T, serverURL, appURL string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no nginx (install Debian's nginx): %v", err)
		}
		t.Fatalf("CI is set but nginx is missing (.ci/run installs it): %v", err)
	}
	shipped, err := os.ReadFile(filepath.Join("..", "..", "examples", "forward-auth", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// A free loopback port for nginx.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	server, _ := url.Parse(serverURL)
	app, _ := url.Parse(appURL)
	conf := string(shipped)
	for old, repl := range map[string]string{
		"server 127.0.0.1:8080;": "server " + server.Host + ";",
		"server 127.0.0.1:3000;": "server " + app.Host + ";",
		"listen 80;":             "listen " + addr + ";",
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("the shipped nginx.conf no longer has %q", old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "untis.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/untis.conf;
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error log:\n%s", log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx stopped: %v\n%s\n%s", waitErr, out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The shipped nginx auth_request configuration, against a real nginx: a signed-in request
// reaches the app with the identity headers and without our cookies; an anonymous one gets 401
// and never reaches the app; forged identity headers never arrive; the server's own paths go to
// the server.
func TestNginxForwardAuth(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{forwardAuthOnly: true})
	nginx := startNginx(t, g.app.srv.URL, g.up.srv.URL)
	tid := g.school(platformsim.TenantSpec{ID: "4301", Name: "Gymnasium Süd"}, store.StateActive)
	if _, err := g.store.SaveSetup(g.ctx(), tid, map[string]string{"district": "Süd & West"}, "test", nil); err != nil {
		t.Fatal(err)
	}
	var u platformsim.User
	for _, c := range g.sim.Users(tid) {
		if c.Role == platformsim.RoleTeacher && !isASCII(c.GivenName+c.FamilyName) {
			u = c
			break
		}
	}
	if u.SourcedID == "" {
		u = g.user(tid, platformsim.RoleTeacher)
	}
	// Signing in happens at the server (its PUBLIC_URL); the browser's cookies are for the
	// host, so they go to nginx on the same host too.
	b, _ := g.signIn(tid, u.SourcedID, "lesson_id", "L-1")
	nu, _ := url.Parse(nginx)
	b.jar.SetCookies(asHTTPS(nu), []*http.Cookie{{Name: "app", Value: "1", Path: "/"}})

	forged := http.Header{
		"X-Untis-Role": {"administrator"}, "x-untis-tenant-id": {"9999"}, "X-UNTIS-USER-ID": {"forged", "twice"},
		"X-Untis-Identity": {"eyJhbGciOiJub25lIn0.e30."}, "X_Untis_Email": {"boss@evil.example"},
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		before := g.up.hits.Load()
		got := b.send(method, nginx+"/lessons/1?x=2", strings.NewReader("body"), forged)
		if got.status != http.StatusOK || got.body != "app page /lessons/1" || g.up.hits.Load() != before+1 {
			t.Fatalf("%s signed in through nginx: %d %q", method, got.status, got.body)
		}
		seen := g.up.last(t)
		if seen.Method != method || seen.RequestURI != "/lessons/1?x=2" {
			t.Errorf("the app saw %s %s", seen.Method, seen.RequestURI)
		}
		id := decoded(t, seen.Header)
		if id[gateway.HeaderTenantID] != tid || id[gateway.HeaderUserID] != u.SourcedID || id[gateway.HeaderRole] != platformsim.RoleTeacher ||
			id[gateway.HeaderGivenName] != u.GivenName || id[gateway.HeaderFamilyName] != u.FamilyName || id[gateway.HeaderEmail] != u.Email ||
			id[gateway.HeaderLaunch] != "lesson_id=L-1" || id[gateway.HeaderSetup] != "district=S%C3%BCd+%26+West" ||
			id[gateway.HeaderSchoolName] != "Gymnasium Süd" {
			t.Errorf("%s: identity through nginx %v", method, id)
		}
		if names := untisHeaders(seen.Header); len(names) != len(gateway.IdentityHeaders) {
			t.Errorf("%s: the app got %v", method, names)
		}
		if _, err := verifyAssertion(t, g.app.srv.URL, id[gateway.HeaderIdentity], g.clock.Now(), g.app.srv.URL); err != nil {
			t.Errorf("%s: the assertion through nginx does not verify: %v", method, err)
		}
		if c := seen.Header.Get("Cookie"); strings.Contains(strings.ToLower(c), "untis-") || !strings.Contains(c, "app=1") {
			t.Errorf("%s: the app got Cookie %q", method, c)
		}
	}

	// Our cookies anywhere in the header, in any case, go; the app's stay as they were.
	req, _ := http.NewRequest(http.MethodGet, nginx+"/cookies-test", nil)
	req.Header.Set("Cookie", "__Host-untis-session="+b.cookie("__Host-untis-session")+"; a=1; __Host-untis-flow-x=y;b=\"two words\"; __HOST-UNTIS-form=z")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := g.up.lastFor(t, "/cookies-test").Header.Get("Cookie"); resp.StatusCode != http.StatusOK || c != `a=1;b="two words"` {
		t.Errorf("explicit cookies through nginx: %d, the app got %q", resp.StatusCode, c)
	}

	// Anonymous, with or without forged headers: 401 and the app never sees it.
	anon := g.browser()
	before := g.up.hits.Load()
	for _, h := range []http.Header{nil, forged, {"Cookie": {"__Host-untis-session=" + strings.Repeat("A", 43)}}} {
		got := anon.send(http.MethodGet, nginx+"/lessons/1", nil, h)
		if got.status != http.StatusUnauthorized || !strings.Contains(got.body, "open this app from Untis") {
			t.Errorf("anonymous through nginx: %d %q", got.status, got.body)
		}
	}
	// A person's browser gets the page in their language, styled, its language switch back to
	// the page they asked for.
	de := g.browser()
	de.lang = "de-AT"
	got := de.send(http.MethodGet, nginx+"/lessons/1?week=2", nil, http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}})
	if got.status != http.StatusUnauthorized || !strings.Contains(got.body, `<html lang="de">`) ||
		!strings.Contains(got.body, `href="/_untis/lang?to=en&amp;return=%2Flessons%2F1%3Fweek%3D2"`) ||
		!strings.Contains(got.body, `href="/_untis/static/app.css"`) {
		t.Errorf("a person's anonymous request through nginx: %d\n%s", got.status, got.body)
	}
	if sw := de.get(nginx + "/_untis/lang?to=en&return=%2Flessons%2F1"); sw.status != http.StatusSeeOther || sw.location != nginx+"/lessons/1" {
		t.Errorf("the language switch through nginx: %d to %q", sw.status, sw.location)
	}
	if g.up.hits.Load() != before {
		t.Errorf("%d anonymous requests reached the app through nginx", g.up.hits.Load()-before)
	}

	// The server's own paths go to the server.
	if got := anon.get(nginx + "/launch?tenant_id=" + tid); got.status != http.StatusFound || !strings.HasPrefix(got.location, g.simURL) {
		t.Errorf("/launch through nginx: %d %q", got.status, got.location)
	}
	if got := anon.get(nginx + "/_untis/static/app.css"); got.status != http.StatusOK || !strings.Contains(got.header.Get("Content-Type"), "text/css") {
		t.Errorf("/_untis/static/app.css through nginx: %d", got.status)
	}
	if got := anon.get(nginx + "/.well-known/jwks.json"); got.status != http.StatusOK || !strings.Contains(got.body, `"keys"`) {
		t.Errorf("JWKS through nginx: %d", got.status)
	}
	if got := anon.get(nginx + "/_untis/internal-auth"); got.status != http.StatusNotFound {
		t.Errorf("nginx's internal auth location answers outsiders: %d", got.status)
	}
	if g.up.hits.Load() != before {
		t.Error("the server's paths reached the app")
	}
}
