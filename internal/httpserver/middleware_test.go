package httpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
)

// LogBuffer is a bytes.Buffer safe for a logger writing from server goroutines. It is exported
// (in a test file, so only to tests) for the external test package as well.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// records parses the JSON log lines.
func (l *LogBuffer) Records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newTestServer(embed bool) (*Server, *LogBuffer) {
	buf := &LogBuffer{}
	log := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	req.Header.Set("X-Request-Id", "req-panic-1")
	h.ServeHTTP(rec, req)

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
	if !strings.Contains(body, "req-panic-1") {
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
	if panicLine["request_id"] != "req-panic-1" {
		t.Errorf("panic log request_id = %v, want req-panic-1", panicLine["request_id"])
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
	called := false
	srv := httptest.NewServer(limitBody(limit)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
	})))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || called {
		t.Errorf("status %d, handler called %v; want 413 without the handler", resp.StatusCode, called)
	}
}
