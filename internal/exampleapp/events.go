package exampleapp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	// The Standard Webhooks reference library: what a partner's Go app verifies the server's
	// events with. It is a dependency of the example app (not only of the tests), as it would be
	// of a partner's app; the server signs with its own code (internal/events), so the two check
	// each other.
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The events the app takes: one request's body at most (the server's are a few hundred bytes),
// message ids of at most this length, and this many ids remembered to drop a delivery seen
// before (older ones are still caught by their sequence).
const (
	maxEventBody   = 1 << 20
	maxMessageID   = 256
	rememberIDs    = 10_000
	eventsPath     = "/untis/events"
	eventDeletedTy = "school.deleted"
)

// eventLog is what the app keeps of the lifecycle events the server sends it (README "School
// lifecycle events"): per school, the last sequence it applied, the school's state after it,
// and the last events. It lives in memory: a restart of the app forgets it, and the server does
// not send delivered events again. A real app stores events before answering 2xx.
type eventLog struct {
	hooks []*standardwebhooks.Webhook // one per secret; nil: the app takes no events
	kept  int
	now   func() time.Time

	mu      sync.Mutex
	seen    map[string]struct{} // webhook-ids received
	seenQ   []string            // the same, oldest first, to forget the oldest
	schools map[string]*schoolLog
}

// schoolLog is what the app knows of one school from its events.
type schoolLog struct {
	LastSequence int64  // of the last event applied
	State        string // the school's state after it
	Events       []receivedEvent
	Duplicates   int // deliveries of an event received before (same webhook-id)
	Skipped      int // events older than one applied before
}

// receivedEvent is one event as the app keeps it: what it shows, not the whole payload (the
// setup answers stay out; only the names of the changed fields are kept).
type receivedEvent struct {
	MessageID      string
	TenantID       string
	Type           string
	Timestamp      string // when the change happened (the payload's)
	Sequence       int64
	State          string
	PreviousState  string
	Source         string
	Message        string
	Name           string
	Changed        []string
	ReasonType     string
	ReasonText     string
	ActionRequired string
	ReceivedAt     time.Time
	// Skipped says why the event was not applied (it is older than one applied before); such
	// an event keeps only its type and sequence, so nothing of a deleted school comes back.
	Skipped string
}

// newEventLog parses EVENTS_SECRET: "whsec_" + base64, several separated by spaces or commas.
// Errors never quote a secret.
func newEventLog(secrets string, kept int) (*eventLog, error) {
	l := &eventLog{kept: kept, now: time.Now, seen: map[string]struct{}{}, schools: map[string]*schoolLog{}}
	for i, s := range strings.FieldsFunc(secrets, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		if !strings.HasPrefix(s, "whsec_") {
			return nil, fmt.Errorf("EVENTS_SECRET: secret %d does not start with whsec_", i+1)
		}
		h, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			return nil, fmt.Errorf("EVENTS_SECRET: secret %d is not whsec_ followed by standard base64", i+1)
		}
		l.hooks = append(l.hooks, h)
	}
	return l, nil
}

func (l *eventLog) enabled() bool { return l != nil && len(l.hooks) > 0 }

// verify checks the request's Standard Webhooks signature over the raw body with each secret,
// and the webhook-timestamp against the clock (5 minutes either way: the library's tolerance),
// so a recorded request cannot be replayed later. The reason is for the sender.
func (l *eventLog) verify(body []byte, h http.Header) (reason string, ok bool) {
	var err error
	for _, hook := range l.hooks {
		if err = hook.Verify(body, h); err == nil {
			return "", true
		}
	}
	switch {
	case errors.Is(err, standardwebhooks.ErrRequiredHeaders):
		return "webhook-id, webhook-timestamp and webhook-signature are required", false
	case errors.Is(err, standardwebhooks.ErrInvalidHeaders):
		return "webhook-timestamp is not a number of seconds", false
	case errors.Is(err, standardwebhooks.ErrMessageTooOld), errors.Is(err, standardwebhooks.ErrMessageTooNew):
		return "webhook-timestamp is more than 5 minutes off the app's clock", false
	}
	return "no signature verifies with the app's EVENTS_SECRET", false
}

// payload is the body the server sends: {"type", "timestamp", "data"}.
type payload struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      struct {
		TenantID       string   `json:"tenantId"`
		Sequence       int64    `json:"sequence"`
		State          string   `json:"state"`
		PreviousState  string   `json:"previousState"`
		Source         string   `json:"source"`
		Message        string   `json:"message"`
		Name           string   `json:"name"`
		Changed        []string `json:"changed"`
		ReasonType     string   `json:"reasonType"`
		ReasonText     string   `json:"reasonText"`
		ActionRequired string   `json:"action_required"`
	} `json:"data"`
}

func parseEvent(body []byte, messageID string) (receivedEvent, error) {
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return receivedEvent{}, errors.New("the body is not the JSON of an event")
	}
	switch {
	case p.Type == "":
		return receivedEvent{}, errors.New("the event has no type")
	case !tenantIDPattern.MatchString(p.Data.TenantID):
		return receivedEvent{}, errors.New("data.tenantId is missing or not a tenant id")
	case p.Data.Sequence <= 0:
		return receivedEvent{}, errors.New("data.sequence is missing")
	}
	d := p.Data
	return receivedEvent{
		MessageID: messageID, TenantID: d.TenantID, Type: p.Type, Timestamp: p.Timestamp, Sequence: d.Sequence, State: d.State,
		PreviousState: d.PreviousState, Source: d.Source, Message: d.Message, Name: d.Name, Changed: d.Changed,
		ReasonType: d.ReasonType, ReasonText: d.ReasonText, ActionRequired: d.ActionRequired,
	}, nil
}

// record applies one verified event and says what became of it. An event whose webhook-id came
// before is a second delivery (the server delivers at least once): dropped. One older than the
// last event applied for its school (an operator's retry of an event that failed, arriving
// after later ones) is skipped, as the README tells apps: the school's state stays the later
// one's. A school.deleted event deletes everything the app keeps of the school but itself: the
// event asks the app to delete the school's personal data.
func (l *eventLog) record(ev receivedEvent) string {
	tenantID := ev.TenantID
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.seen[ev.MessageID]; dup {
		if s := l.schools[tenantID]; s != nil {
			s.Duplicates++
		}
		return "duplicate: received before"
	}
	l.seen[ev.MessageID] = struct{}{}
	l.seenQ = append(l.seenQ, ev.MessageID)
	if len(l.seenQ) > rememberIDs {
		delete(l.seen, l.seenQ[0])
		l.seenQ = slices.Delete(l.seenQ, 0, 1)
	}
	s := l.schools[tenantID]
	if s == nil {
		s = &schoolLog{}
		l.schools[tenantID] = s
	}
	ev.ReceivedAt = l.now()
	if ev.Sequence <= s.LastSequence {
		s.Skipped++
		s.add(receivedEvent{MessageID: ev.MessageID, TenantID: tenantID, Type: ev.Type, Sequence: ev.Sequence, ReceivedAt: ev.ReceivedAt,
			Skipped: fmt.Sprintf("older than sequence %d, applied before", s.LastSequence)}, l.kept)
		return fmt.Sprintf("skipped: older than sequence %d of school %s", s.LastSequence, tenantID)
	}
	s.LastSequence, s.State = ev.Sequence, ev.State
	if ev.Type == eventDeletedTy {
		s.Events = nil // the school's personal data: names, setup changes, reasons
		s.Duplicates, s.Skipped = 0, 0
	}
	s.add(ev, l.kept)
	return "stored"
}

func (s *schoolLog) add(ev receivedEvent, kept int) {
	s.Events = append(s.Events, ev)
	if len(s.Events) > kept {
		s.Events = slices.Delete(s.Events, 0, len(s.Events)-kept)
	}
}

// school returns a copy of what the app keeps of a school (ok false: nothing).
func (l *eventLog) school(tenantID string) (schoolLog, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.schools[tenantID]
	if s == nil {
		return schoolLog{}, false
	}
	c := *s
	c.Events = slices.Clone(s.Events)
	return c, true
}

// handleEvent is the app's events receiver: the server POSTs each lifecycle event here directly
// (EVENTS_URL, the app's own address), never through the gateway.
func (a *app) handleEvent(w http.ResponseWriter, r *http.Request) {
	if !a.events.enabled() {
		http.Error(w, "this app takes no events: it has no EVENTS_SECRET", http.StatusServiceUnavailable)
		return
	}
	// The gateway proxies every path of the app, this one too, and adds a signed-in user's
	// identity headers. The server's events never carry them: such a request is a user's, who
	// has no business here (and could not sign anyway).
	if fromHeaders(r).Present {
		http.Error(w, "events come from the server directly, not through the gateway with a user's identity", http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "the event is larger than 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "the body could not be read", http.StatusBadRequest)
		return
	}
	// Verify before reading anything of the body: unsigned input is not parsed.
	if reason, ok := a.events.verify(body, r.Header); !ok {
		a.log.Warn("events: refused an event whose signature does not verify", "reason", reason)
		http.Error(w, reason, http.StatusUnauthorized)
		return
	}
	id := r.Header.Get(standardwebhooks.HeaderWebhookID)
	if len(id) > maxMessageID {
		http.Error(w, "webhook-id is longer than 256 bytes", http.StatusBadRequest)
		return
	}
	ev, err := parseEvent(body, id)
	if err != nil {
		a.log.Warn("events: a signed event the app cannot read", "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	outcome := a.events.record(ev)
	a.log.Info("events: received", "type", ev.Type, "tenant", ev.TenantID, "sequence", ev.Sequence, "outcome", outcome)
	// A 2xx also for a duplicate or an older event: it was handled, and any other answer would
	// make the server send it again for days.
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, outcome+"\n")
}

// eventsPage is what the events page shows: the events of the signed-in user's school only
// (another school's lifecycle is not its users' business).
type eventsPage struct {
	ID       identity
	Token    verified
	Verified bool
	Enabled  bool
	School   string
	Known    bool
	Log      schoolLog
	Events   []receivedEvent // newest first
	// DeletedAt is the sequence of the school's deletion, when it is among the events kept (then
	// it is the oldest: the deletion deleted those before it).
	DeletedAt int64
}

func (a *app) handleEvents(w http.ResponseWriter, r *http.Request) {
	id, v, ok := a.verifiedSchool(r)
	p := eventsPage{ID: id, Token: v, Verified: ok, Enabled: a.events.enabled()}
	if ok && p.Enabled {
		p.School = v.Claims.TenantID // the verified school, never a parameter: see verifiedSchool
		p.Log, p.Known = a.events.school(p.School)
		p.Events = slices.Clone(p.Log.Events)
		slices.Reverse(p.Events)
		if len(p.Log.Events) > 0 && p.Log.Events[0].Type == eventDeletedTy {
			p.DeletedAt = p.Log.Events[0].Sequence
		}
	}
	a.render(w, "events.html", p)
}
