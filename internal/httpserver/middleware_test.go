package httpserver

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/untis-partner/server/internal/logtest"
)

func newTestServer(embed bool) (*Server, *logtest.Buffer) {
	log, buf := logtest.New()
	return New(Deps{Logger: log, EmbedMode: embed}), buf
}

// A panicking handler behind the real middleware chain: 500 page in plain words, the panic and
// its stack in the log under the request's id, the request itself logged and counted.
func TestRecovererThroughHandler(t *testing.T) {
	t.Parallel()
	s, logs := newTestServer(false)
	h := s.Handler()
	h.(chi.Router).Get("/test-panic", func(w http.ResponseWriter, r *http.Request) {
		panic("kaboom: SECRETPANICVALUE")
	})

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/test-panic", nil)
	h.ServeHTTP(rec, req)
	id := rec.Header().Get("X-Request-Id")
	if id == "" {
		t.Fatal("no X-Request-Id on the 500 page")
	}

	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want HTML", ct)
	}
	if !strings.Contains(body, "Something went wrong") {
		t.Errorf("500 page does not explain itself: %s", body)
	}
	for _, leak := range []string{"kaboom", "SECRETPANICVALUE", "goroutine", ".go:", "runtime/debug"} {
		if strings.Contains(body, leak) {
			t.Errorf("500 page contains %q: %s", leak, body)
		}
	}
	if !strings.Contains(body, id) {
		t.Errorf("500 page does not quote the request id for support: %s", body)
	}

	var panicLine, requestLine map[string]any
	for _, r := range logs.Records(t) {
		switch r["msg"] {
		case "panic in handler":
			panicLine = r
		case "request":
			requestLine = r
		}
	}
	if panicLine == nil {
		t.Fatalf("no panic log line in %s", logs)
	}
	if panicLine["level"] != "ERROR" {
		t.Errorf("panic logged at %v", panicLine["level"])
	}
	if stack, _ := panicLine["stack"].(string); !strings.Contains(stack, "goroutine") || !strings.Contains(stack, "middleware_test.go") {
		t.Errorf("panic log has no useful stack: %q", stack)
	}
	if panicLine["request_id"] != id {
		t.Errorf("panic log request_id = %v, want %s", panicLine["request_id"], id)
	}
	if requestLine == nil {
		t.Fatalf("the panicking request was not logged: %s", logs)
	}
	if requestLine["status"] != float64(500) || requestLine["route"] != "/test-panic" {
		t.Errorf("request line = %v", requestLine)
	}

	// The server keeps serving.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("healthz after panic: %d", rec.Code)
	}
}

// A handler that panics after part of its response is out: a 500 page appended to it would
// garble the response (or pass for its end), so the connection is cut and the client sees a
// failure; the panic is still logged under the request's id.
func TestRecovererAbortsAPartialResponse(t *testing.T) {
	t.Parallel()
	flush := func(w http.ResponseWriter) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			panic(err)
		}
	}
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
	}{
		{"body flushed", func(w http.ResponseWriter) { _, _ = io.WriteString(w, "<html>partial page"); flush(w) }},
		{"body still buffered", func(w http.ResponseWriter) { _, _ = io.WriteString(w, "<html>partial page") }},
		{"status only", func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }},
		{"status flushed", func(w http.ResponseWriter) { w.WriteHeader(http.StatusAccepted); flush(w) }},
	}
	log, logs := logtest.New()
	// The test's own ids are kept because the client is a trusted peer.
	s := New(Deps{Logger: log, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	h := s.Handler()
	for i, tt := range tests {
		h.(chi.Router).Get("/partial/"+strconv.Itoa(i), func(w http.ResponseWriter, r *http.Request) {
			tt.write(w)
			panic("after partial output: SECRETPARTIAL")
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// A fresh connection per request, so the transport never retries on a reused one.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := "partial-" + strconv.Itoa(i)
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/partial/"+strconv.Itoa(i), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Request-Id", id)
			resp, err := client.Do(req)
			if err == nil {
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil {
					t.Errorf("client read a complete response %d %q; want the connection cut", resp.StatusCode, body)
				}
				if strings.Contains(string(body), "Something went wrong") || strings.Contains(string(body), "SECRETPARTIAL") {
					t.Errorf("an error page or the panic value was appended: %q", body)
				}
			}
			// The panic line is written before the connection is cut, so it is there by now.
			var line map[string]any
			for _, r := range logs.Find(t, "panic in handler") {
				if r["request_id"] == id {
					line = r
				}
			}
			if line == nil {
				t.Fatalf("no panic log line with request_id %s:\n%s", id, logs)
			}
			if p, _ := line["panic"].(string); !strings.Contains(p, "after partial output") {
				t.Errorf("panic log line = %v", line)
			}
			// The aborted request still gets its request line (written before the connection
			// is cut, like the panic line), marked as aborted.
			var reqLine map[string]any
			for _, r := range logs.Find(t, "request") {
				if r["request_id"] == id {
					reqLine = r
				}
			}
			if reqLine == nil || reqLine["aborted"] != true || reqLine["level"] != "ERROR" {
				t.Errorf("request line of the aborted request = %v, want one with aborted=true at ERROR", reqLine)
			}
		})
	}
}

// http.ErrAbortHandler is how a handler aborts a response on purpose; net/http expects to see it.
func TestRecovererReraisesErrAbortHandler(t *testing.T) {
	t.Parallel()
	s, logs := newTestServer(false)
	h := s.recoverer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	defer func() {
		if rec := recover(); rec != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", rec)
		}
		if strings.Contains(logs.String(), "panic in handler") {
			t.Errorf("ErrAbortHandler logged as a panic: %s", logs)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
}

func TestLimitBody(t *testing.T) {
	t.Parallel()
	const limit = 16
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	})
	h := limitBody(limit)(echo)
	tests := []struct {
		name          string
		body          string
		contentLength int64 // -1: unknown (chunked)
		want          int
	}{
		{"empty", "", 0, http.StatusOK},
		{"under the limit", "hello", 5, http.StatusOK},
		{"exactly the limit", strings.Repeat("x", limit), limit, http.StatusOK},
		{"declared over the limit", strings.Repeat("x", limit+1), limit + 1, http.StatusRequestEntityTooLarge},
		{"chunked under the limit", "hello", -1, http.StatusOK},
		{"chunked over the limit", strings.Repeat("x", 10*limit), -1, http.StatusRequestEntityTooLarge},
		{"chunked one byte over", strings.Repeat("x", limit+1), -1, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			req.ContentLength = tt.contentLength
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusOK && rec.Body.String() != tt.body {
				t.Errorf("body %q, want %q", rec.Body, tt.body)
			}
		})
	}

	// Over real HTTP as well: the declared length is refused before the handler runs.
	// The handler runs on the server's goroutine: the flag must be safe to read from here.
	var called atomic.Bool
	srv := httptest.NewServer(limitBody(limit)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called.Store(true)
	})))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || called.Load() {
		t.Errorf("status %d, handler called %v; want 413 without the handler", resp.StatusCode, called.Load())
	}
}
