package logtest_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/untis-partner/server/internal/logtest"
)

// recorder stands in for a *testing.T to see what AssertNoSecrets reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestConcurrentWritersAndRecords(t *testing.T) {
	t.Parallel()
	log, buf := logtest.New()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				log.Info("hello", "writer", w, "i", i)
				_ = buf.String() // reading while others write is safe
			}
		}()
	}
	log.Debug("debug is captured too")
	wg.Wait()
	recs := buf.Records(t)
	if len(recs) != writers*each+1 {
		t.Fatalf("%d records, want %d", len(recs), writers*each+1)
	}
	if got := len(buf.Find(t, "hello")); got != writers*each {
		t.Errorf("Find(hello) = %d records, want %d", got, writers*each)
	}
	if d := buf.Find(t, "debug is captured too"); len(d) != 1 || d[0]["level"] != "DEBUG" {
		t.Errorf("debug record = %v", d)
	}
}

func TestAssertNoSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		logged    string
		secrets   []string
		wantFails []string // substrings, one per expected failure
	}{
		{"clean", "nothing to see", []string{"hunter2hunter2", ""}, nil},
		{"raw", "token hunter2hunter2 here", []string{"other-secret", "hunter2hunter2"}, []string{"secret #2"}},
		{"JSON-escaped quote", `pw a"b"c-secret`, []string{`a"b"c-secret`}, []string{"secret #1"}},
		{"JSON-escaped newline", "line\nbreak-secret", []string{"line\nbreak-secret"}, []string{"secret #1"}},
		{"two secrets", "alpha-secret and beta-secret", []string{"alpha-secret", "beta-secret"}, []string{"secret #1", "secret #2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log, buf := logtest.New()
			log.Info("msg", "value", tt.logged)
			rec := &recorder{TB: t}
			buf.AssertNoSecrets(rec, tt.secrets...)
			if len(rec.errors) != len(tt.wantFails) {
				t.Fatalf("reported %d failures, want %d: %q", len(rec.errors), len(tt.wantFails), rec.errors)
			}
			for i, want := range tt.wantFails {
				if !strings.Contains(rec.errors[i], want) {
					t.Errorf("failure %q does not name %s", rec.errors[i], want)
				}
			}
			// The report shows the line, but never the secret itself.
			for _, e := range rec.errors {
				if !strings.Contains(e, "[SECRET#") {
					t.Errorf("failure %q does not show the redacted line", e)
				}
				for _, s := range tt.secrets {
					if s != "" && strings.Contains(e, s) {
						t.Errorf("failure %q repeats a secret", e)
					}
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	got := logtest.Redact(`{"a":"s3cret","b":"x\"y"}`, "s3cret", `x"y`, "")
	if want := `{"a":"[SECRET#1]","b":"[SECRET#2]"}`; got != want {
		t.Errorf("Redact = %s, want %s", got, want)
	}
}
