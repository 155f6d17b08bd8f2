package httpserver_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// BenchmarkCalendar1000Events is one Calendar API request end to end: the platform's signed POST
// over HTTP, verified, the school read from PostgreSQL, the app asked (over HTTP, as the user,
// with a fresh identity assertion) and its 1,000 events (~150 KB of iCalendar) read, checked and
// written as the answer. The request is signed before the clock starts (the platform's cost).
//
//	go test -run '^$' -bench BenchmarkCalendar -benchtime 200x ./internal/httpserver
func BenchmarkCalendar1000Events(b *testing.B) {
	c := newCalendarEnv(b, calOptions{})
	tid := c.school(platformsim.TenantSpec{ID: "7991"}, store.StateActive)
	answer := icsEvents("2023-03-01", 1000)
	c.app.answerWith(http.StatusOK, "text/calendar", answer)
	body := calendarBody(tid, "u-1", "2023-03-01", "2023-04-30")
	auth, alg := c.sim.SignWebhook(body)
	client := &http.Client{Timeout: 30 * time.Second}
	url := c.app0() + httpserver.CalendarPath
	b.SetBytes(int64(len(answer)))
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Algorithm", alg)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || bytes.Count(out, []byte("BEGIN:VEVENT")) != 1000 {
			b.Fatalf("%d, %d bytes", resp.StatusCode, len(out))
		}
	}
}
