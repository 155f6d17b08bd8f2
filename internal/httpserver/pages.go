package httpserver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/web"
)

// page is the data every template gets.
type page struct {
	Page      string // which content block to render
	Title     string
	Heading   string
	Message   string
	RequestID string

	// The signed-in pages.
	Session     *store.Session
	CSRF        string
	IsAdmin     bool
	School      string
	EntryPoint  string
	Lesson      string
	LaunchItems []launchItem

	// Forms: what was sent (never a secret), a message per wrong field, a notice on top.
	Values   map[string]string
	Problems map[string]string
	Notice   string
	Fields   []formField // the setup form
	Pending  bool        // the school is pending setup
	State    string      // a school's state after activation

	// The console.
	Operator  string
	Tenants   []store.TenantSummary
	Tenant    *store.TenantSummary
	TenantID  string
	Audit     []store.AuditEvent
	Answers   []answer
	NextAfter string
	// The lifecycle events to the partner's app: the events page, a school's own, the count of
	// failed ones the schools page warns about.
	Events       *eventsView
	SchoolEvents []store.OutboxEvent
	FailedEvents int

	// The "sign-in needs cookies" page: the launch to open again, and whether we are in an iFrame.
	Relaunch string
	Embed    bool
}

// handleStatic serves the server's static files, under /_untis/static/ (and /static/ outside
// gateway mode, where that path is the app's).
func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	prefix := "/static/"
	if strings.HasPrefix(r.URL.Path, "/_untis/static/") {
		prefix = "/_untis/static/"
	}
	http.StripPrefix(prefix, http.FileServerFS(web.Static())).ServeHTTP(w, r)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, r, http.StatusNotFound, "Page not found", "There is nothing at this address.")
}

func (s *Server) handleMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, r, http.StatusMethodNotAllowed, "Not allowed", "This address does not accept that kind of request.")
}

// renderError shows a plain-words error page. Messages are written for end users; details for
// operators go to the log, keyed by the request id shown on the page.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, heading, message string) {
	s.render(w, r, status, page{Page: "error", Title: heading, Heading: heading, Message: message, RequestID: RequestID(r.Context())})
}

// render executes the layout into a buffer first, so a template error becomes a clean 500
// instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, p page) {
	var buf bytes.Buffer
	if err := s.pages.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "page", p.Page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
