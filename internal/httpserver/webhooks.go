package httpserver

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// webhookAnswer is the JSON body of every webhook answer. The platform only looks at the status;
// the words are for a person reading the platform's delivery log.
type webhookAnswer struct {
	Status   string `json:"status"` // processed, duplicate, ignored, or an error word
	TenantID string `json:"tenantId,omitempty"`
	State    string `json:"state,omitempty"`
	Message  string `json:"message,omitempty"`
}

// handleWebhook receives both webhooks (contract.md): POST /webhooks/credentials and
// /webhooks/deactivation each take either kind, dispatching on the event type. The order of the
// checks is the order of trust: the body's size, then its signature over the raw bytes, and only
// then its content. Answers: 200 processed or duplicate; 400 malformed; 401 bad signature (no
// detail); 413 over 64 KiB; 415 not JSON; 503 when the store is down (nothing was written, so
// the platform's retry delivers it later). Never 410.
func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	reqID := RequestID(ctx)
	// A declared length over the limit is refused without reading; an undeclared one when the
	// reading passes it.
	var (
		body    []byte
		err     error
		tooBig  = r.ContentLength > webhook.MaxBody
		overMax *http.MaxBytesError
	)
	if !tooBig {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.MaxBody))
		tooBig = errors.As(err, &overMax)
	}
	if tooBig {
		s.webhookDone(w, r, http.StatusRequestEntityTooLarge, "", "too_large", webhookAnswer{Status: "too_large", Message: "the body is over 64 KiB"})
		return
	}
	if err != nil {
		s.webhookDone(w, r, http.StatusBadRequest, "", "unreadable", webhookAnswer{Status: "bad_request", Message: "the body could not be read"})
		return
	}
	if err := s.webhooks.Verify(r.Header.Get("Algorithm"), r.Header.Get("Authorization"), body); err != nil {
		// The reason is for our log only; the sender learns nothing but 401.
		s.log.WarnContext(ctx, "webhook refused", "request_id", reqID, "reason", err.Error(), "client_ip", ClientIP(ctx))
		s.webhookDone(w, r, http.StatusUnauthorized, "", "bad_signature", webhookAnswer{Status: "unauthorized"})
		return
	}
	jsonType := true
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		jsonType = err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
		if !jsonType {
			s.webhookDone(w, r, http.StatusUnsupportedMediaType, "", "not_json", webhookAnswer{Status: "unsupported_media_type", Message: "the body must be application/json"})
			return
		}
	}
	ev, err := webhook.Parse(body)
	var fieldErr *webhook.FieldError
	switch {
	case errors.Is(err, webhook.ErrNotJSON):
		// Signed, but not a JSON object: without a content type that is the wrong media type;
		// with one that claims JSON, a malformed body.
		if r.Header.Get("Content-Type") == "" {
			s.webhookDone(w, r, http.StatusUnsupportedMediaType, "", "not_json", webhookAnswer{Status: "unsupported_media_type", Message: "the body is not JSON"})
			return
		}
		s.webhookDone(w, r, http.StatusBadRequest, "", "malformed", webhookAnswer{Status: "bad_request", Message: "the body is not a JSON object"})
		return
	case errors.As(err, &fieldErr):
		s.webhookDone(w, r, http.StatusBadRequest, "", "malformed", webhookAnswer{Status: "bad_request", Message: fieldErr.Error()})
		return
	case err != nil:
		s.webhookDone(w, r, http.StatusBadRequest, "", "malformed", webhookAnswer{Status: "bad_request", Message: "the body could not be parsed"})
		return
	}
	out, err := s.onboard.Receive(ctx, ev, body)
	if store.IsInvalidText(err) {
		// Parse keeps such text out; should any reach the database, it is the body's fault.
		s.log.WarnContext(ctx, "webhook refused: the database cannot store its text", "request_id", reqID, "event", ev.Type,
			"tenant_id", ev.TenantID, "sqlstate", sqlState(err))
		s.webhookDone(w, r, http.StatusBadRequest, ev.Type, "malformed", webhookAnswer{Status: "bad_request", TenantID: ev.TenantID,
			Message: "the body contains text that cannot be stored (a NUL character)"})
		return
	}
	if err != nil {
		s.log.ErrorContext(ctx, "webhook not stored", "request_id", reqID, "event", ev.Type, "tenant_id", ev.TenantID, "err", err)
		s.webhookDone(w, r, http.StatusServiceUnavailable, ev.Type, "store_error",
			webhookAnswer{Status: "unavailable", TenantID: ev.TenantID, Message: "not stored; please deliver it again later"})
		return
	}
	a := webhookAnswer{Status: "processed", TenantID: ev.TenantID, State: out.State}
	switch {
	case out.Duplicate:
		a = webhookAnswer{Status: "duplicate", TenantID: ev.TenantID, Message: "this exact body was received before; nothing changed"}
		// Say where the school stands, for whoever reads the delivery log (a replayed
		// activation of a deactivated school stays deactivated).
		if t, err := s.store.Tenant(ctx, ev.TenantID); err == nil {
			a.State = t.State
		}
	case out.Ignored != "":
		a.Status, a.Message = "ignored", out.Ignored
	}
	s.log.InfoContext(ctx, "webhook received", "request_id", reqID, "event", ev.Type, "tenant_id", ev.TenantID,
		"outcome", a.Status, "previous_state", out.PreviousState, "state", out.State, "credentials_version", out.Version)
	s.webhookDone(w, r, http.StatusOK, ev.Type, a.Status, a)
}

func (s *Server) webhookDone(w http.ResponseWriter, r *http.Request, status int, event, outcome string, a webhookAnswer) {
	if event == "" {
		event = "unknown"
	}
	s.webhookCount.With(event, outcome).Inc()
	writeJSON(w, status, a)
}
