package httpserver

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/store"
)

// The console's view of the school lifecycle events sent to the partner's app (internal/events):
// what failed for good and what is still being retried, with a retry for each (and for every
// failed one at once); the recently delivered ones for reference.

// eventsPageSize bounds each list of the page.
const eventsPageSize = 100

// eventsView is the events page's content.
type eventsView struct {
	Counts    store.EventCounts
	Target    string // where events go, "" when EVENTS_URL is unset
	Failed    []store.OutboxEvent
	Pending   []store.OutboxEvent
	Delivered []store.OutboxEvent
}

func (s *Server) handleAdminEvents(w http.ResponseWriter, r *http.Request) {
	s.renderAdminEvents(w, r, http.StatusOK, i18n.Text{})
}

// renderAdminEvents shows the events page; problem, when set, says why the last action did not
// happen. What an action did is said by the flash after its redirect (POST-redirect-GET).
func (s *Server) renderAdminEvents(w http.ResponseWriter, r *http.Request, status int, problem i18n.Text) {
	ctx := r.Context()
	v := &eventsView{Target: s.eventsTarget}
	var err error
	if v.Counts, err = s.store.CountEvents(ctx); err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	for _, l := range []struct {
		status string
		limit  int
		into   *[]store.OutboxEvent
	}{
		{store.EventFailed, eventsPageSize, &v.Failed},
		{store.EventPending, eventsPageSize, &v.Pending},
		{store.EventDelivered, 20, &v.Delivered},
	} {
		if *l.into, err = s.store.ListEvents(ctx, store.EventFilter{Status: l.status, Limit: l.limit}); err != nil {
			s.storeTrouble(w, r, err, false)
			return
		}
	}
	p := s.adminPage(r, "admin_events", i18n.T("events.heading"))
	p.Message, p.Events = problem, v
	s.render(w, r, status, p)
}

// handleAdminEventRetry queues one event again: a failed one with a new retry window, a pending
// one at once.
func (s *Server) handleAdminEventRetry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	os := operatorFrom(ctx)
	ref := chi.URLParam(r, "eventID")
	if id, err := strconv.ParseInt(ref, 10, 64); err != nil || id <= 0 {
		s.renderAdminEvents(w, r, http.StatusNotFound, i18n.T("events.problem.no_such", "Event", ref))
		return
	}
	ev, err := s.store.RetryEvent(ctx, ref, "operator "+os.Email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.renderAdminEvents(w, r, http.StatusNotFound, i18n.T("events.problem.gone", "Event", ref))
	case errors.Is(err, store.ErrEventDelivered):
		s.renderAdminEvents(w, r, http.StatusConflict, i18n.T("events.problem.delivered", "Event", ref))
	case errors.Is(err, store.ErrEventBusy):
		s.renderAdminEvents(w, r, http.StatusConflict, i18n.T("events.problem.busy", "Event", ref))
	case err != nil:
		s.storeTrouble(w, r, err, false)
	default:
		s.log.InfoContext(ctx, "event queued again by an operator", "request_id", RequestID(ctx), "event_id", ev.ID,
			"tenant_id", ev.TenantID, "type", ev.Type, "operator", os.Email)
		s.setFlash(w, "event_retried", strconv.FormatInt(ev.ID, 10))
		http.Redirect(w, r, "/admin/events", http.StatusSeeOther)
	}
}

// handleAdminEventsRetryFailed queues every failed event again.
func (s *Server) handleAdminEventsRetryFailed(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	os := operatorFrom(ctx)
	n, err := s.store.RetryFailedEvents(ctx, "operator "+os.Email)
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	s.log.InfoContext(ctx, "failed events queued again by an operator", "request_id", RequestID(ctx), "events", n, "operator", os.Email)
	if n > 0 {
		s.setFlash(w, "events_retried", strconv.Itoa(n))
	} else {
		s.setFlash(w, "events_retried0")
	}
	http.Redirect(w, r, "/admin/events", http.StatusSeeOther)
}
