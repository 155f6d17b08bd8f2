package httpserver_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// Signed-in requests reach the app with the user's identity, for teachers, students and
// administrators of two schools, names with umlauts intact, and the assertion saying the same.
func TestGatewayGivesTheAppTheIdentityOfEveryRoleOfTwoSchools(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{})
	north := g.school(platformsim.TenantSpec{ID: "3101", Name: "Gymnasium Nord"}, store.StateActive)
	south := g.school(platformsim.TenantSpec{ID: "3102", Name: "Volksschule Süd"}, store.StateActive)
	if _, err := g.store.SaveSetup(g.ctx(), north, map[string]string{"district": "Nord-Ost", "contact": "it@nord.example"}, "test", nil); err != nil {
		t.Fatal(err)
	}
	base := g.app.srv.URL
	pub, _ := url.Parse(base)
	for _, tid := range []string{north, south} {
		var users []platformsim.User
		for _, role := range []string{platformsim.RoleTeacher, platformsim.RoleStudent, platformsim.RoleAdministrator} {
			users = append(users, g.user(tid, role))
		}
		// And someone whose name is not plain ASCII.
		for _, u := range g.sim.Users(tid) {
			if !isASCII(u.GivenName + u.FamilyName) {
				users = append(users, u)
				break
			}
		}
		if isASCII(users[len(users)-1].GivenName + users[len(users)-1].FamilyName) {
			t.Fatalf("school %s has no user with a non-ASCII name", tid)
		}
		lesson := g.sim.Classes(tid)[0]
		for _, u := range users {
			t.Run(tid+"/"+u.Role+"/"+u.GivenName, func(t *testing.T) {
				b, landed := g.signIn(tid, u.SourcedID, "lesson_id", lesson.SourcedID, "school", "Schule Ä&Ö")
				if landed.status != http.StatusOK || landed.body != "app page /" || landed.header.Get("X-App") != "yes" {
					t.Fatalf("sign-in landed on %d %q", landed.status, landed.body)
				}
				got := b.get(base + "/lessons/today?view=week")
				if got.status != http.StatusOK || got.body != "app page /lessons/today" {
					t.Fatalf("GET /lessons/today = %d %q", got.status, got.body)
				}
				seen := g.up.last(t)
				if seen.RequestURI != "/lessons/today?view=week" || seen.Host != pub.Host {
					t.Errorf("the app saw %s with Host %s", seen.RequestURI, seen.Host)
				}
				id := decoded(t, seen.Header)
				want := map[string]string{
					gateway.HeaderTenantID: tid, gateway.HeaderUserID: u.SourcedID, gateway.HeaderRole: u.Role,
					gateway.HeaderGivenName: u.GivenName, gateway.HeaderFamilyName: u.FamilyName, gateway.HeaderEmail: u.Email,
				}
				for k, v := range want {
					if id[k] != v {
						t.Errorf("%s = %q, want %q", k, id[k], v)
					}
				}
				launch, err := url.ParseQuery(id[gateway.HeaderLaunch])
				if err != nil || launch.Get("lesson_id") != lesson.SourcedID || launch.Get("school") != "Schule Ä&Ö" || len(launch) != 2 {
					t.Errorf("%s = %q (%v)", gateway.HeaderLaunch, id[gateway.HeaderLaunch], err)
				}
				setupAnswers, _ := url.ParseQuery(id[gateway.HeaderSetup])
				if tid == north && (setupAnswers.Get("district") != "Nord-Ost" || setupAnswers.Get("contact") != "it@nord.example") ||
					tid == south && len(setupAnswers) != 0 {
					t.Errorf("%s = %q", gateway.HeaderSetup, id[gateway.HeaderSetup])
				}
				if others := untisHeaders(seen.Header); len(others) != len(gateway.IdentityHeaders) {
					t.Errorf("the app got the headers %v", others)
				}
				if seen.Header.Get("X-Forwarded-Proto") != pub.Scheme || seen.Header.Get("X-Forwarded-Host") != pub.Host ||
					seen.Header.Get("X-Forwarded-For") != "127.0.0.1" || len(seen.Header.Get("X-Request-Id")) == 0 {
					t.Errorf("forwarding headers: proto %q host %q for %q request id %q", seen.Header.Get("X-Forwarded-Proto"),
						seen.Header.Get("X-Forwarded-Host"), seen.Header.Get("X-Forwarded-For"), seen.Header.Get("X-Request-Id"))
				}
				if strings.Contains(seen.Header.Get("Cookie"), "untis") {
					t.Errorf("our cookies reached the app: %q", seen.Header.Get("Cookie"))
				}
				// The assertion: verifiable with go-jose against our JWKS, and the same identity.
				c, err := verifyAssertion(t, base, id[gateway.HeaderIdentity], g.clock.Now(), base)
				if err != nil {
					t.Fatalf("X-Untis-Identity does not verify: %v", err)
				}
				if c.Subject != tid+"/"+u.SourcedID || c.TenantID != tid || c.UserID != u.SourcedID || c.Role != u.Role ||
					c.GivenName != u.GivenName || c.FamilyName != u.FamilyName || c.Email != u.Email ||
					c.Launch["lesson_id"] != lesson.SourcedID || (tid == north) != (c.Setup["district"] == "Nord-Ost") {
					t.Errorf("assertion claims %+v", c)
				}
			})
		}
	}
	// The school's name is learned from the platform after the first request (the gateway never
	// shows the built-in home page that learned it before).
	b, _ := g.signIn(south, g.user(south, platformsim.RoleTeacher).SourcedID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.get(base + "/name")
		if got := decoded(t, g.up.lastFor(t, "/name").Header)[gateway.HeaderSchoolName]; got == "Volksschule Süd" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("X-Untis-School-Name is still %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if raw := g.up.lastFor(t, "/name").Header.Get(gateway.HeaderSchoolName); raw != "Volksschule%20S%C3%BCd" {
		t.Errorf("school name encoded as %q", raw)
	}
}

// The first request of a school's first user already carries the school's name: the app's first
// page is what a school sees first, and "signed in at <school>" without the school looks broken.
func TestGatewayFirstRequestOfASchoolCarriesItsName(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{})
	tid := g.school(platformsim.TenantSpec{ID: "3201", Name: "Realschule Öst"}, store.StateActive)
	_, landed := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	if landed.status != http.StatusOK || landed.body != "app page /" {
		t.Fatalf("sign-in landed on %d %q", landed.status, landed.body)
	}
	id := decoded(t, g.up.lastFor(t, "/").Header)
	if got := id[gateway.HeaderSchoolName]; got != "Realschule Öst" {
		t.Errorf("the first request's %s = %q, want the platform's name", gateway.HeaderSchoolName, got)
	}
	c, err := verifyAssertion(t, g.app.srv.URL, id[gateway.HeaderIdentity], g.clock.Now(), g.app.srv.URL)
	if err != nil || c.SchoolName != "Realschule Öst" {
		t.Errorf("the first request's assertion: school_name %q (%v)", c.SchoolName, err)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Without a live session of an active school, nothing reaches the app: pages get the "open this
// app from Untis" page, scripts get 401 JSON, a school being set up gets its page.
func TestGatewayAnonymousRequestsNeverReachTheApp(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3201"}, store.StateActive)
	pending := g.school(platformsim.TenantSpec{ID: "3202"}, store.StatePendingSetup)

	anon := g.browser()
	forged := http.Header{
		"X-Untis-Tenant-Id": {tid}, "X-Untis-Role": {"administrator"}, "X-Untis-User-Id": {"x"},
		"Cookie": {"__Host-untis-session=" + strings.Repeat("A", 43)},
	}
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		status             int
		json               bool
	}{
		{"a page", http.MethodGet, "/", nil, http.StatusUnauthorized, false},
		{"a deep page", http.MethodGet, "/lessons/42?x=1", nil, http.StatusUnauthorized, false},
		{"forged identity and session", http.MethodGet, "/", forged, http.StatusUnauthorized, false},
		{"fetch with Accept JSON", http.MethodGet, "/api/lessons", http.Header{"Accept": {"application/json"}}, http.StatusUnauthorized, true},
		{"XMLHttpRequest", http.MethodGet, "/api/lessons", http.Header{"X-Requested-With": {"XMLHttpRequest"}}, http.StatusUnauthorized, true},
		{"fetch()", http.MethodGet, "/data", http.Header{"Sec-Fetch-Mode": {"cors"}}, http.StatusUnauthorized, true},
		{"a form post", http.MethodPost, "/lessons", nil, http.StatusUnauthorized, true},
		{"DELETE", http.MethodDelete, "/lessons/1", nil, http.StatusUnauthorized, true},
		{"the app's static files", http.MethodGet, "/static/app.css", nil, http.StatusUnauthorized, false},
		{"a WebSocket", http.MethodGet, "/ws", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}, http.StatusUnauthorized, false},
	} {
		got := anon.send(tc.method, base+tc.path, strings.NewReader(""), tc.header)
		if got.status != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, got.status, tc.status)
		}
		if tc.json {
			var e struct{ Error, Message string }
			if err := json.Unmarshal([]byte(got.body), &e); err != nil || e.Error != "not_signed_in" || got.header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: body %q", tc.name, got.body)
			}
		} else if !strings.Contains(got.body, "Open this app from Untis") || got.header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: not the anonymous page with our headers: %s", tc.name, got.body)
		}
	}

	// A school being set up: its users are signed in, but the app does not see them yet.
	teacher, landed := g.signIn(pending, g.user(pending, platformsim.RoleTeacher).SourcedID)
	if landed.status != http.StatusForbidden || !strings.Contains(landed.body, "being set up") || strings.Contains(landed.body, "Complete the setup") {
		t.Errorf("teacher of a pending school: %d\n%s", landed.status, landed.body)
	}
	if got := teacher.do(http.MethodGet, base+"/x", http.Header{"Accept": {"application/json"}}); got.status != http.StatusForbidden || !strings.Contains(got.body, "school_not_ready") {
		t.Errorf("pending school, JSON: %d %s", got.status, got.body)
	}
	admin := g.browser()
	admin.signInAs(pending, g.user(pending, platformsim.RoleAdministrator).SourcedID)
	if hops := admin.follow(base + "/launch?" + launchQuery(pending).Encode()); hops[len(hops)-1].url != base+"/setup" {
		t.Errorf("the admin of a pending school lands on %s", hops[len(hops)-1].url)
	}
	if got := admin.get(base + "/"); got.status != http.StatusForbidden || !strings.Contains(got.body, `href="/setup"`) {
		t.Errorf("admin of a pending school on /: %d\n%s", got.status, got.body)
	}

	// A signed-out browser is anonymous again.
	user, _ := g.signIn(tid, g.user(tid, platformsim.RoleStudent).SourcedID)
	hits := g.up.hits.Load()
	user.send(http.MethodPost, base+"/logout", nil, nil)
	if got := user.get(base + "/"); got.status != http.StatusUnauthorized {
		t.Errorf("after sign-out: %d", got.status)
	}
	if n := g.up.hits.Load() - hits; n != 0 {
		t.Errorf("the app received %d requests after the sign-out", n)
	}
	if n := g.up.hits.Load(); n != 1 {
		t.Errorf("the app received %d requests, want only the student's landing", n)
	}
}

// rawRequest sends req as bytes over a new connection and returns the status line's code.
func rawRequest(t testing.TB, base, req string) int {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A client's own X-Untis-* headers never arrive, however they are written: any case,
// duplicated, with underscores, folded, named hop-by-hop, or as trailers.
func TestGatewayForgedIdentityHeadersNeverArrive(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{public: "/assets/"})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3301"}, store.StateActive)
	student := g.user(tid, platformsim.RoleStudent)
	b, _ := g.signIn(tid, student.SourcedID)
	session := b.cookie("__Host-untis-session")
	if session == "" {
		t.Fatal("no session cookie")
	}
	forgeries := []string{
		"X-Untis-Role: administrator\r\n",
		"x-untis-role: administrator\r\nX-UNTIS-ROLE: administrator\r\n",
		"X-Untis-Role: administrator\r\nX-Untis-Role: teacher\r\n",
		"X-Untis-Tenant-Id: 9999\r\nX-Untis-User-Id: forged\r\nX-Untis-Email: boss@evil.example\r\n",
		"X_Untis_Role: administrator\r\nx_untis_user_id: forged\r\nX-Untis_Role: administrator\r\n",
		"X-Untis-Identity: eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoiZm9yZ2VkIn0.\r\n",
		"X-Untis-Role: student\r\n administrator\r\n",                                   // obs-fold continuation
		"X-App: a\r\n X-Untis-Role: administrator\r\n",                                  // a forgery folded into another header
		"X-Untis-Something-New: 1\r\nX-Untis-: 1\r\n",                                   // names we do not use yet
		"Connection: X-Untis-Role, X-Untis-Identity\r\nX-Untis-Role: administrator\r\n", // naming ours hop-by-hop
		"X-Forwarded-Host: evil.example\r\nX_Forwarded_Host: evil.example\r\nX-Forwarded-Proto: gopher\r\nForwarded: host=evil.example\r\n",
	}
	for _, path := range []string{"/private", "/assets/app.css"} {
		for i, f := range forgeries {
			for _, withSession := range []bool{true, false} {
				if path == "/private" && !withSession {
					continue // anonymous: refused before anything is proxied (tested elsewhere)
				}
				before := g.up.hits.Load()
				cookie := "app=1"
				if withSession {
					cookie += "; __Host-untis-session=" + session
				}
				req := "GET " + path + "?f=" + fmt.Sprint(i) + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(base, "http://") + "\r\n" +
					"Cookie: " + cookie + "\r\n" + f + "Connection: close\r\n\r\n"
				status := rawRequest(t, base, req)
				if status == http.StatusBadRequest {
					// Refused outright (Go refuses some malformed headers): nothing was proxied.
					if g.up.hits.Load() != before {
						t.Errorf("forgery %d on %s: refused, yet the app saw it", i, path)
					}
					continue
				}
				if status != http.StatusOK || g.up.hits.Load() != before+1 {
					t.Fatalf("forgery %d on %s: status %d", i, path, status)
				}
				seen := g.up.last(t)
				names := untisHeaders(seen.Header)
				if path == "/assets/app.css" {
					// A public path: no identity at all.
					if len(names) != 0 {
						t.Errorf("forgery %d reached the public path: %v", i, names)
					}
				} else {
					id := decoded(t, seen.Header)
					if id[gateway.HeaderRole] != platformsim.RoleStudent || id[gateway.HeaderTenantID] != tid || id[gateway.HeaderUserID] != student.SourcedID ||
						len(names) != len(gateway.IdentityHeaders) || id[gateway.HeaderEmail] != student.Email {
						t.Errorf("forgery %d: the app got %v (%v)", i, id, names)
					}
				}
				if seen.Header.Get("X-Forwarded-Host") == "evil.example" || seen.Header.Get("X-Forwarded-Proto") != "http" ||
					seen.Header.Get("Forwarded") != "" || len(seen.Header.Values("X-Forwarded-Host")) != 1 {
					t.Errorf("forgery %d: forwarding headers %v", i, seen.Header)
				}
				if seen.Header.Get("Cookie") != "app=1" {
					t.Errorf("forgery %d: Cookie %q", i, seen.Header.Get("Cookie"))
				}
			}
		}
	}
	// A chunked body whose trailer names our header.
	before := g.up.hits.Load()
	status := rawRequest(t, base, "POST /upload HTTP/1.1\r\nHost: x\r\nCookie: __Host-untis-session="+session+"\r\n"+
		"Transfer-Encoding: chunked\r\nTrailer: X-Untis-Role\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Untis-Role: administrator\r\n\r\n")
	if status != http.StatusOK || g.up.hits.Load() != before+1 {
		t.Fatalf("chunked upload with a trailer: %d", status)
	}
	if seen := g.up.last(t); decoded(t, seen.Header)[gateway.HeaderRole] != platformsim.RoleStudent || seen.Header.Get("Trailer") != "" {
		t.Errorf("trailer: the app got %v", seen.Header)
	}
}

// Our cookies never reach the app, the app's do; the app's answers cannot set or clear ours.
func TestGatewayKeepsOurCookiesAndPassesTheApps(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3401"}, store.StateActive)
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	session := b.cookie("__Host-untis-session")
	u, _ := url.Parse(base)
	b.jar.SetCookies(asHTTPS(u), []*http.Cookie{{Name: "app", Value: "1", Path: "/"}, {Name: "__Host-untis-flow-abc", Value: "f", Path: "/"}})

	got := b.get(base + "/cookies")
	if got.status != http.StatusOK {
		t.Fatalf("/cookies = %d", got.status)
	}
	// The browser holds our session and flow cookies, the app's, and (same host, another port)
	// the simulator's; all but ours arrive, as the browser sent them.
	sent := g.up.lastFor(t, "/cookies").Header.Get("Cookie")
	simCookie := "sim_user_" + tid + "=" + g.user(tid, platformsim.RoleTeacher).SourcedID
	if sent != simCookie+"; app=1" {
		t.Errorf("the app got Cookie %q, want %q", sent, simCookie+"; app=1")
	}
	setCookies := strings.Join(got.header.Values("Set-Cookie"), "\n")
	if !strings.Contains(setCookies, "app2=fine") || strings.Contains(setCookies, "untis") {
		t.Errorf("Set-Cookie from the app: %q", setCookies)
	}
	if b.cookie("__Host-untis-session") != session || b.cookie("app2") != "fine" {
		t.Error("the app changed our session cookie, or its own did not arrive")
	}
	if got := b.get(base + "/after"); got.status != http.StatusOK {
		t.Errorf("still signed in: %d", got.status)
	}
	if c := g.up.lastFor(t, "/after").Header.Get("Cookie"); c != simCookie+"; app=1; app2=fine" {
		t.Errorf("the app's cookies on the next request: %q", c)
	}
}

// The assertion verifies with go-jose against /.well-known/jwks.json, and not after its exp,
// with another key or for another audience; one signed before a key rotation still verifies
// during the overlap.
func TestGatewayAssertionVerifiesAndSurvivesARotation(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3501", Name: "Schule 3501"}, store.StateActive)
	// The name known from the start: learning it changes the identity, which is signed again.
	if err := g.store.SetTenantName(g.ctx(), tid, "Schule 3501"); err != nil {
		t.Fatal(err)
	}
	b, _ := g.signIn(tid, g.user(tid, platformsim.RoleTeacher).SourcedID)
	tok := decoded(t, g.up.last(t).Header)[gateway.HeaderIdentity]
	issued := g.clock.Now()

	c, err := verifyAssertion(t, base, tok, issued, base)
	if err != nil {
		t.Fatalf("a fresh assertion does not verify: %v", err)
	}
	if ttl := c.Expiry.Time().Sub(c.IssuedAt.Time()); ttl <= 0 || ttl > 5*time.Minute {
		t.Errorf("lifetime %s", ttl)
	}
	if _, err := verifyAssertion(t, base, tok, c.Expiry.Time().Add(time.Second), base); err == nil {
		t.Error("verifies after its exp")
	}
	if _, err := verifyAssertion(t, base, tok, issued, "https://another-app.example"); err == nil {
		t.Error("verifies for another audience")
	}
	kid := g.signer(g.app).KeyID()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	forged, _ := jwt.Signed(sig).Claims(c).Serialize()
	if _, err := verifyAssertion(t, base, forged, issued, base); err == nil {
		t.Error("an assertion signed with another key under our kid verifies")
	}
	// The same assertion travels with every request of the session while it is young.
	b.get(base + "/again")
	if again := decoded(t, g.up.last(t).Header)[gateway.HeaderIdentity]; again != tok {
		t.Error("a second request within the assertion's first half-life was signed again")
	}

	// A forced rotation: the successor is published now and signs after two refresh periods.
	signer := g.signer(g.app)
	newKID, from, err := signer.Rotate(g.ctx())
	if err != nil {
		t.Fatal(err)
	}
	g.clock.Advance(from.Sub(g.clock.Now()) + time.Second)
	if err := signer.Reload(g.ctx()); err != nil {
		t.Fatal(err)
	}
	if signer.KeyID() != newKID || newKID == kid {
		t.Fatalf("after the rotation the signing key is %s (old %s, new %s)", signer.KeyID(), kid, newKID)
	}
	// The assertion signed before the rotation still verifies, before its exp.
	if _, err := verifyAssertion(t, base, tok, c.Expiry.Time().Add(-time.Second), base); err != nil {
		t.Errorf("an assertion signed before the rotation does not verify during the overlap: %v", err)
	}
	// Past half of its lifetime the session gets an assertion from the new key.
	g.clock.Advance(3 * time.Minute)
	b.get(base + "/later")
	later := decoded(t, g.up.lastFor(t, "/later").Header)[gateway.HeaderIdentity]
	parsed, err := jwt.ParseSigned(later, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || parsed.Headers[0].KeyID != newKID {
		t.Fatalf("after the rotation the app gets an assertion of key %v (%v)", parsed, err)
	}
	if _, err := verifyAssertion(t, base, later, g.clock.Now(), base); err != nil {
		t.Errorf("the new key's assertion does not verify: %v", err)
	}
}

// Forward-auth answers an ingress: 200 with the identity headers for a live session, 401
// otherwise, whatever the method; it works without UPSTREAM_URL too.
func TestForwardAuth(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{forwardAuthOnly: true})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3601", Name: "Realschule Müllheim"}, store.StateActive)
	pending := g.school(platformsim.TenantSpec{ID: "3602"}, store.StatePendingSetup)
	u := g.user(tid, platformsim.RoleTeacher)
	b, landed := g.signIn(tid, u.SourcedID, "exam_id", "E-7")
	if landed.status != http.StatusOK || !strings.Contains(landed.body, u.GivenName) {
		t.Fatalf("without UPSTREAM_URL the built-in app is served: %d", landed.status)
	}
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut} {
		got := b.send(method, base+"/_untis/auth", nil, http.Header{"X-Untis-Role": {"administrator"}, "X-Forwarded-Uri": {"/anything"}})
		if got.status != http.StatusOK || got.body != "" {
			t.Fatalf("%s /_untis/auth = %d %q", method, got.status, got.body)
		}
		id := decoded(t, got.header)
		if id[gateway.HeaderTenantID] != tid || id[gateway.HeaderUserID] != u.SourcedID || id[gateway.HeaderRole] != platformsim.RoleTeacher ||
			id[gateway.HeaderGivenName] != u.GivenName || !strings.Contains(id[gateway.HeaderLaunch], "exam_id=E-7") {
			t.Errorf("%s: identity %v", method, id)
		}
		if _, err := verifyAssertion(t, base, id[gateway.HeaderIdentity], g.clock.Now(), base); err != nil {
			t.Errorf("%s: assertion: %v", method, err)
		}
		if got.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", method, got.header.Get("Cache-Control"))
		}
	}
	anon := g.browser()
	for _, h := range []http.Header{nil, {"Cookie": {"__Host-untis-session=" + strings.Repeat("x", 43)}}} {
		got := anon.send(http.MethodGet, base+"/_untis/auth", nil, h)
		if got.status != http.StatusUnauthorized || len(untisHeaders(got.header)) != 0 || got.location != "" {
			t.Errorf("anonymous forward-auth: %d %v", got.status, got.header)
		}
	}
	pb, _ := g.signIn(pending, g.user(pending, platformsim.RoleTeacher).SourcedID)
	if got := pb.get(base + "/_untis/auth"); got.status != http.StatusUnauthorized || len(untisHeaders(got.header)) != 0 {
		t.Errorf("pending school's forward-auth: %d", got.status)
	}
	// The keys are published at both addresses.
	for _, p := range []string{"/.well-known/jwks.json", "/_untis/jwks.json"} {
		got := anon.get(base + p)
		var set jose.JSONWebKeySet
		if got.status != http.StatusOK || json.Unmarshal([]byte(got.body), &set) != nil || len(set.Keys) == 0 || !set.Keys[0].IsPublic() {
			t.Errorf("%s = %d %s", p, got.status, got.body)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Error("something reached the (unconfigured) upstream")
	}
}

// The server keeps its own paths in gateway mode; everything else is the app's.
func TestGatewayReservedPaths(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{public: "/static/"})
	base := g.app.srv.URL
	anon := g.browser()
	for _, tc := range []struct {
		path   string
		status int
		app    bool // reaches the app
		body   string
	}{
		{"/_untis/static/app.css", http.StatusOK, false, "font"},
		{"/static/app.css", http.StatusOK, true, "app page /static/app.css"},
		{"/healthz", http.StatusOK, false, ""},
		{"/api/me", http.StatusUnauthorized, false, "not_signed_in"},
		{"/admin/login", http.StatusOK, false, "Sign in"},
		{"/admin/no-such-page", http.StatusNotFound, false, "Page not found"},
		{"/_untis/no-such-thing", http.StatusNotFound, false, "Page not found"},
		{"/webhooks/other", http.StatusNotFound, false, "Page not found"},
		{"/launch", http.StatusBadRequest, false, "does not name a school"},
		{"/.well-known/jwks.json", http.StatusOK, false, `"keys"`},
		{"/setup", http.StatusUnauthorized, false, ""},
	} {
		before := g.up.hits.Load()
		got := anon.get(base + tc.path)
		if got.status != tc.status || !strings.Contains(got.body, tc.body) || (g.up.hits.Load() != before) != tc.app {
			t.Errorf("%s = %d (app reached: %v) %.200s", tc.path, got.status, g.up.hits.Load() != before, got.body)
		}
	}
	// Our pages use our static path, which works in gateway mode.
	got := anon.get(base + "/")
	if !strings.Contains(got.body, `href="/_untis/static/app.css"`) {
		t.Errorf("the page does not link /_untis/static/app.css:\n%s", got.body)
	}
	if got := anon.do(http.MethodPut, base+"/launch", nil); got.status != http.StatusMethodNotAllowed || g.up.hits.Load() != 1 {
		t.Errorf("PUT /launch = %d", got.status)
	}
}

// Every route of the server is one gateway.Reserved names, so no route of ours can be shadowed
// by the app, and the README's list stays true.
func TestEveryRouteIsReserved(t *testing.T) {
	t.Parallel()
	up, _ := url.Parse("http://127.0.0.1:1")
	h := httpserver.New(httpserver.Deps{Proxy: &gateway.ProxyConfig{Upstream: up, PublicURL: up}}).Handler()
	err := chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		p := strings.TrimSuffix(strings.ReplaceAll(route, "{tenantID}", "x"), "*")
		if !gateway.Reserved(p) && !gateway.Reserved(p+"x") {
			t.Errorf("%s %s is not reserved", method, route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A sign-in lands on the launch's return_to, else on the path configured for its entry point,
// else for the user's role, else on "/".
func TestGatewayLandingPaths(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, gatewayOptions{landing: "entry:lesson=/lessons,entry:exam=/exams,role:student=/student"})
	base := g.app.srv.URL
	tid := g.school(platformsim.TenantSpec{ID: "3701"}, store.StateActive)
	teacher, student := g.user(tid, platformsim.RoleTeacher).SourcedID, g.user(tid, platformsim.RoleStudent).SourcedID
	for _, tc := range []struct {
		name, user string
		kv         []string
		want       string
	}{
		{"lesson entry", teacher, []string{"lesson_id", "L1"}, "/lessons"},
		{"exam entry", student, []string{"exam_id", "E1"}, "/exams"},
		{"main menu, student", student, nil, "/student"},
		{"main menu, teacher", teacher, nil, "/"},
		{"return_to wins", teacher, []string{"lesson_id", "L1", "return_to", "/deep/link?tab=2"}, "/deep/link?tab=2"},
		{"return_to into our machine paths is ignored", student, []string{"return_to", "/_untis/auth"}, "/student"},
		{"return_to off-site is ignored", teacher, []string{"lesson_id", "L1", "return_to", "//evil.example/"}, "/lessons"},
	} {
		b := g.browser()
		b.signInAs(tid, tc.user)
		hops := b.follow(base + "/launch?" + launchQuery(tid, tc.kv...).Encode())
		last := hops[len(hops)-1]
		if last.url != base+tc.want || last.status != http.StatusOK {
			t.Errorf("%s: landed on %s (%d), want %s", tc.name, last.url, last.status, tc.want)
			continue
		}
		wantPath, _, _ := strings.Cut(tc.want, "?")
		if seen := g.up.last(t); seen.Path != wantPath || seen.RequestURI != tc.want {
			t.Errorf("%s: the app served %s", tc.name, seen.RequestURI)
		}
	}
}
