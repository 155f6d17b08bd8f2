package httpserver

import (
	"errors"
	"io"
	"net/http"

	"github.com/untis-partner/server/internal/calendar"
)

// handleCalendar answers the platform's Calendar API (POST to the Calendar-Path registered with
// Untis): the body is read raw and bounded here, everything else is internal/calendar's. The
// answer is text/calendar (200, possibly without events) or a JSON error (400, 401, 403, 404,
// 413, 415, 503), never an error page.
func (s *Server) handleCalendar(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if s.calendar == nil {
		http.Error(w, "the Calendar API is not available", http.StatusNotFound)
		return
	}
	in := calendar.Incoming{
		Algorithm: r.Header.Get("Algorithm"), Authorization: r.Header.Get("Authorization"),
		ContentType: r.Header.Get("Content-Type"), RequestID: RequestID(r.Context()), ClientIP: ClientIP(r.Context()),
		// A declared length over the limit is refused without reading; an undeclared one when
		// the reading passes it.
		TooLarge: r.ContentLength > calendar.MaxRequestBody,
	}
	if !in.TooLarge {
		var err error
		var overMax *http.MaxBytesError
		in.Body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, calendar.MaxRequestBody))
		in.TooLarge = errors.As(err, &overMax)
		if err != nil && !in.TooLarge {
			http.Error(w, "the body could not be read", http.StatusBadRequest)
			return
		}
	}
	a := s.calendar.Answer(r.Context(), in)
	h.Set("Content-Type", a.ContentType)
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

// CalendarPath is the Calendar-Path to register with Untis.
const CalendarPath = "/_untis/calendar"
