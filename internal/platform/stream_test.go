package platform_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/store"
)

// TestStream runs Stream, the passthrough's call, against the fake platform: the token and 401
// rules of GetJSON, retries for GETs only and only before the body, the headers it sends, and
// the limits of a streamed answer.
func TestStream(t *testing.T) {
	t.Parallel()
	st := edgeStore(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *store.Store)
	}{
		{"GetIsRetriedAndSendsOnlyWhatItMay", streamGetIsRetriedAndSendsOnlyWhatItMay},
		{"WritesAreNotRetried", streamWritesAreNotRetried},
		{"WriteAfterA401IsSentOnceMore", streamWriteAfterA401IsSentOnceMore},
		{"SecondUnauthorizedMarksAndBacksOff", streamSecondUnauthorizedMarksAndBacksOff},
		{"HeaderTimeoutPerAttempt", streamHeaderTimeoutPerAttempt},
		{"BodyMayTakeLongerThanTheHeaderTimeout", streamBodyMayTakeLongerThanTheHeaderTimeout},
		{"StalledBodyIsCut", streamStalledBodyIsCut},
		{"RedirectIsNotFollowed", streamRedirectIsNotFollowed},
		{"RefusesWhatItCannotSendAsIs", streamRefusesWhatItCannotSendAsIs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, st)
		})
	}
}

func streamGetIsRetriedAndSendsOnlyWhatItMay(t *testing.T, st *store.Store) {
	tid := edgeTID()
	f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) {
		if n <= 2 {
			edgeWrite(w, http.StatusServiceUnavailable, `{"code":503,"message":"busy"}`)
			return
		}
		edgeWrite(w, http.StatusOK, `{"users":[]}`, "X-Total-Count", "0", "Set-Cookie", "a=b")
	}}
	w := newEdgeWorld(t, st, f, platform.Config{MaxAttempts: 3}, tid)
	hdr := http.Header{
		"Accept": {"application/json"}, "Accept-Language": {"de"}, "Cookie": {"session=1"},
		"Authorization": {"Bearer the-apps-own"}, "X-Forwarded-For": {"10.0.0.1"}, "Content-Type": {"text/plain"},
	}
	q := "filter=role%3D%27teacher%27%20AND%20x='y'&sort=familyName&limit=5"
	resp, err := w.clients.For(tid).Stream(edgeCtx(t), "test.stream", platform.StreamRequest{
		Path: "/ims/oneroster/v1p1/users", RawQuery: q, Header: hdr,
	})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != `{"users":[]}` || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Total-Count") != "0" {
		t.Fatalf("answer %d %q %v %v", resp.StatusCode, body, resp.Header, err)
	}
	reqs := f.apiReqs()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (two 503s retried)", len(reqs))
	}
	for _, r := range reqs {
		if r.uri != "/ims/oneroster/v1p1/users?"+q {
			t.Errorf("sent %q, want the query as given", r.uri)
		}
		if r.auth != "Bearer tok-1" || r.header.Get("Accept-Language") != "de" || r.header.Get("Accept") != "application/json" {
			t.Errorf("sent headers %v", r.header)
		}
		for _, k := range []string{"Cookie", "X-Forwarded-For", "Content-Type"} {
			if r.header.Get(k) != "" {
				t.Errorf("%s was sent on: %q", k, r.header.Get(k))
			}
		}
	}
}

func streamWritesAreNotRetried(t *testing.T, st *store.Store) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError} {
		tid := edgeTID()
		f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) {
			edgeWrite(w, status, `{"code":1,"message":"no"}`, "Retry-After", "0")
		}}
		w := newEdgeWorld(t, st, f, platform.Config{MaxAttempts: 3}, tid)
		_, err := w.clients.For(tid).Stream(edgeCtx(t), "test.write", platform.StreamRequest{
			Method: http.MethodPost, Path: "/WebUntis/api/rest/extern/v1/students", Body: []byte(`{}`),
			Header: http.Header{"Content-Type": {"application/json"}},
		})
		var ae *platform.APIError
		if !errors.As(err, &ae) || ae.Status != status || ae.Method != http.MethodPost {
			t.Errorf("%d: err = %v", status, err)
		}
		if n := len(f.apiReqs()); n != 1 {
			t.Errorf("%d: the write was sent %d times", status, n)
		}
	}
}

func streamWriteAfterA401IsSentOnceMore(t *testing.T, st *store.Store) {
	tid := edgeTID()
	var bodies []string
	f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, r.Header.Get("Content-Type")+" "+string(b))
		if n == 1 {
			edgeWrite(w, http.StatusUnauthorized, `{"error":"invalid_token"}`)
			return
		}
		edgeWrite(w, http.StatusCreated, `{"id":7}`, "Location", "/WebUntis/api/rest/extern/v1/students/7")
	}}
	w := newEdgeWorld(t, st, f, platform.Config{}, tid)
	resp, err := w.clients.For(tid).Stream(edgeCtx(t), "test.write", platform.StreamRequest{
		Method: http.MethodPut, Path: "/WebUntis/api/rest/extern/v1/students/7", Body: []byte(`{"a":1}`),
		Header: http.Header{"Content-Type": {"application/json"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := f.apiReqs()
	if resp.StatusCode != http.StatusCreated || len(reqs) != 2 || reqs[0].auth != "Bearer tok-1" || reqs[1].auth != "Bearer tok-2" {
		t.Errorf("status %d, requests %+v", resp.StatusCode, reqs)
	}
	if len(bodies) != 2 || bodies[0] != `application/json {"a":1}` || bodies[1] != bodies[0] {
		t.Errorf("bodies sent: %q", bodies)
	}
}

func streamSecondUnauthorizedMarksAndBacksOff(t *testing.T, st *store.Store) {
	tid := edgeTID()
	f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) {
		edgeWrite(w, http.StatusUnauthorized, `{"error":"invalid_token"}`)
	}}
	w := newEdgeWorld(t, st, f, platform.Config{}, tid)
	req := platform.StreamRequest{Path: "/ims/oneroster/v1p1/users"}
	_, err := w.clients.For(tid).Stream(edgeCtx(t), "test.stream", req)
	if !errors.Is(err, platform.ErrCredentialsRejected) || len(f.apiReqs()) != 2 || len(f.tokenReqs()) != 2 {
		t.Fatalf("err = %v after %d calls and %d token requests", err, len(f.apiReqs()), len(f.tokenReqs()))
	}
	if w.tenant(tid).CredentialsFailingSince == nil {
		t.Error("the credentials are not marked failing")
	}
	_, err = w.clients.For(tid).Stream(edgeCtx(t), "test.stream", req)
	var be *platform.BackoffError
	if !errors.As(err, &be) || !errors.Is(err, platform.ErrCredentialsRejected) || len(f.apiReqs()) != 2 || len(f.tokenReqs()) != 2 {
		t.Errorf("while backing off: err = %v, %d calls", err, len(f.apiReqs()))
	}
}

func streamHeaderTimeoutPerAttempt(t *testing.T, st *store.Store) {
	tid := edgeTID()
	g := newEdgeGate(t)
	f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) { g.wait(r) }}
	w := newEdgeWorld(t, st, f, platform.Config{RequestTimeout: 50 * time.Millisecond, MaxAttempts: 2}, tid)
	_, err := w.clients.For(tid).Stream(edgeCtx(t), "test.stream", platform.StreamRequest{Path: "/ims/oneroster/v1p1/users"})
	var ae *platform.APIError
	var timeout interface{ Timeout() bool }
	if !errors.As(err, &ae) || !errors.Is(err, platform.ErrUnavailable) || !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Errorf("err = %v, want a timeout", err)
	}
	if n := len(f.apiReqs()); n != 2 {
		t.Errorf("%d attempts, want 2 (a timeout is retried for a GET)", n)
	}
}

func streamBodyMayTakeLongerThanTheHeaderTimeout(t *testing.T, st *store.Store) {
	tid := edgeTID()
	f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) {
		w.WriteHeader(http.StatusOK)
		for i := range 30 {
			_, _ = fmt.Fprintf(w, "part%02d", i)
			http.NewResponseController(w).Flush()
			time.Sleep(15 * time.Millisecond)
		}
	}}
	// 30 parts 15 ms apart: longer in all than both the header timeout and the idle timeout,
	// with every gap far below the idle timeout.
	w := newEdgeWorld(t, st, f, platform.Config{RequestTimeout: 50 * time.Millisecond, StreamIdleTimeout: 300 * time.Millisecond}, tid)
	resp, err := w.clients.For(tid).Stream(edgeCtx(t), "test.stream", platform.StreamRequest{Path: "/ims/oneroster/v1p1/users"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var want strings.Builder
	for i := range 30 {
		fmt.Fprintf(&want, "part%02d", i)
	}
	if err != nil || string(b) != want.String() {
		t.Errorf("body %q, %v: a body that keeps moving is cut neither by the header timeout nor by the idle one", b, err)
	}
}

func streamStalledBodyIsCut(t *testing.T, st *store.Store) {
	tid := edgeTID()
	g := newEdgeGate(t)
	f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("first"))
		http.NewResponseController(w).Flush()
		g.wait(r)
	}}
	w := newEdgeWorld(t, st, f, platform.Config{StreamIdleTimeout: 100 * time.Millisecond}, tid)
	resp, err := w.clients.For(tid).Stream(edgeCtx(t), "test.stream", platform.StreamRequest{Path: "/ims/oneroster/v1p1/users"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if string(b) != "first" || err == nil || !strings.Contains(err.Error(), "stopped sending") {
		t.Errorf("body %q, err %v: want the first part, then the idle cut", b, err)
	}
	if n := len(f.apiReqs()); n != 1 {
		t.Errorf("%d requests: a body that broke off is not asked again", n)
	}
}

func streamRedirectIsNotFollowed(t *testing.T, st *store.Store) {
	tid := edgeTID()
	f := &edgeFake{api: func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, "/steal") {
			t.Error("the redirect was followed")
		}
		http.Redirect(w, r, "/WebUntis/api/rest/extern/v1/steal", http.StatusFound)
	}}
	w := newEdgeWorld(t, st, f, platform.Config{MaxAttempts: 3}, tid)
	_, err := w.clients.For(tid).Stream(edgeCtx(t), "test.stream", platform.StreamRequest{Path: "/WebUntis/api/rest/extern/v1/students"})
	var ae *platform.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusFound || !errors.Is(err, platform.ErrUnavailable) || len(f.apiReqs()) != 1 {
		t.Errorf("err = %v after %d requests", err, len(f.apiReqs()))
	}
}

func streamRefusesWhatItCannotSendAsIs(t *testing.T, st *store.Store) {
	tid := edgeTID()
	f := &edgeFake{}
	w := newEdgeWorld(t, st, f, platform.Config{}, tid)
	for _, req := range []platform.StreamRequest{
		{Method: http.MethodHead, Path: "/ims/oneroster/v1p1/users"},
		{Method: "TRACE", Path: "/ims/oneroster/v1p1/users"},
		{Path: "/WebUntis/api/sso/v3/1001/token"},
		{Path: "/ims/oneroster/v1p1/users/../../x"},
		{Path: "/ims/oneroster/v1p1/users/%2e%2e"},
		{Path: "/ims/oneroster/v1p1/users/a%00"},
		{Path: "/ims/oneroster/v1p1/users/%zz"},
		{Path: "/ims/oneroster/v1p1/users/a b"},
		{Path: "/ims/oneroster/v1p1/users", RawQuery: "a=b c"},
		{Path: "/ims/oneroster/v1p1/users", RawQuery: "a=b#c"},
		{Path: "/ims/oneroster/v1p1/users", RawQuery: "a=%zz"},
		{Path: "/ims/oneroster/v1p1/users", RawQuery: strings.Repeat("a", platform.MaxRawQuery+1)},
		{Path: "/ims/oneroster/v1p1/users", Body: []byte("x")},
	} {
		_, err := w.clients.For(tid).Stream(edgeCtx(t), "test.stream", req)
		var ae *platform.APIError
		if !errors.Is(err, platform.ErrBadRequest) || errors.As(err, &ae) {
			t.Errorf("%s %s?%.20s: err = %v, want our own ErrBadRequest", req.Method, req.Path, req.RawQuery, err)
		}
	}
	if _, err := w.clients.For("no/such").Stream(edgeCtx(t), "test.stream", platform.StreamRequest{Path: "/ims/oneroster/v1p1/users"}); !errors.Is(err, platform.ErrBadRequest) {
		t.Errorf("a bad tenant id: %v", err)
	}
	if n, m := len(f.apiReqs()), len(f.tokenReqs()); n != 0 || m != 0 {
		t.Errorf("refused requests reached the platform: %d calls, %d token requests", n, m)
	}
}
