// Package logtest captures what a *slog.Logger writes, for tests: the server's goroutines log
// while the test reads, so the buffer is safe for concurrent use.
//
// Typical use:
//
//	log, buf := logtest.New()
//	srv := httpserver.New(httpserver.Deps{Logger: log})
//	// ... drive the server ...
//	buf.AssertNoSecrets(t, "the-client-secret", "the-session-cookie")
//	for _, r := range buf.Records(t) { ... }
//
// A Buffer is also a plain io.Writer, for code that builds its own logger from a stream (the
// server's run takes stderr). It is test support only: nothing outside tests imports it.
package logtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// New returns a logger that writes JSON lines, at every level down to debug, into a new Buffer.
func New() (*slog.Logger, *Buffer) {
	buf := &Buffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// Buffer collects log output. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p. slog handlers write each record with one call, so a record is never torn.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Records parses the output as JSON lines, one map per record. A line that is not JSON fails
// the test: the server's log format is JSON.
func (b *Buffer) Records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, line := range strings.Split(b.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("logtest: log line %d is not JSON (%v): %.200q", i+1, err, line)
		}
		out = append(out, m)
	}
	return out
}

// Find returns the records whose "msg" is msg, in order.
func (b *Buffer) Find(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range b.Records(t) {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// AssertNoSecrets fails t for every secret that appears in the output, raw or as a JSON handler
// escapes it. The failure names the secret by its position in the arguments and shows the
// offending line with every secret replaced by a marker, so the test output does not repeat
// the secret itself. Empty secrets are ignored.
func (b *Buffer) AssertNoSecrets(t testing.TB, secrets ...string) {
	t.Helper()
	text := b.String()
	lines := strings.Split(text, "\n")
	for i, s := range secrets {
		if s == "" {
			continue
		}
		forms := encodings(s)
		found := false
		for n, line := range lines {
			if containsAny(line, forms) {
				found = true
				t.Errorf("logtest: secret #%d (%s) appears in log line %d: %s", i+1, describe(s), n+1, Redact(line, secrets...))
			}
		}
		if !found && containsAny(text, forms) { // spans lines: only a text handler could do that
			t.Errorf("logtest: secret #%d (%s) appears in the log, across lines", i+1, describe(s))
		}
	}
}

// Redact replaces every occurrence of each secret (raw or JSON-escaped) in text by a marker
// naming its position, [SECRET#n].
func Redact(text string, secrets ...string) string {
	for i, s := range secrets {
		if s == "" {
			continue
		}
		for _, f := range encodings(s) {
			text = strings.ReplaceAll(text, f, fmt.Sprintf("[SECRET#%d]", i+1))
		}
	}
	return text
}

// encodings lists s as it may appear in a log line: raw, and escaped inside a JSON string (with
// and without HTML escaping, which differs between slog's handler and encoding/json).
func encodings(s string) []string {
	forms := []string{s}
	for _, html := range []bool{false, true} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(html)
		if err := enc.Encode(s); err != nil {
			continue
		}
		q := strings.TrimSuffix(buf.String(), "\n")
		q = q[1 : len(q)-1] // without the quotes
		if q != "" && !containsAny(q, forms) {
			forms = append(forms, q)
		}
	}
	return forms
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// describe names a secret without repeating it: its length and first two characters.
func describe(s string) string {
	r := []rune(s)
	if len(r) <= 4 {
		return fmt.Sprintf("%d chars", len(r))
	}
	return fmt.Sprintf("%d chars, starting %q", len(r), string(r[:2]))
}
