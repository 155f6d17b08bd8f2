package platformsim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Webhook event types (facts §6.2, §6.3).
const (
	EventCreated      = "CREATED"
	EventReactivated  = "REACTIVATED"
	EventReset        = "RESET"
	EventDeactivation = "DEACTIVATION"
	EventDeletion     = "DELETION"
)

// WebhookAlgorithm is the value of the Algorithm header: Java's name for
// RSASSA-PKCS1-v1_5 with SHA-256.
const WebhookAlgorithm = "SHA256withRSA"

// maxWebhookAnswer bounds how much of a partner's answer is kept.
const maxWebhookAnswer = 64 << 10

// WebhookResult is the partner's answer to one webhook delivery.
type WebhookResult struct {
	EventType string    `json:"eventType"`
	URL       string    `json:"url"`
	Replay    bool      `json:"replay,omitempty"`
	Time      time.Time `json:"time"`
	// Status is the partner's HTTP status.
	Status int `json:"status"`
	// ResponseBody is the partner's answer (at most 64 KiB).
	ResponseBody string `json:"responseBody"`
	// Body is the exact JSON the simulator sent.
	Body json.RawMessage `json:"body"`
}

// sentWebhook is what ReplayLastWebhook resends, byte for byte.
type sentWebhook struct {
	url, eventType           string
	body                     []byte
	authorization, algorithm string
}

// credentialsPayload is the credentials webhook body (v2), fields in the
// documented order.
type credentialsPayload struct {
	TenantID          string `json:"tenantId"`
	ClientID          string `json:"clientId"`
	Secret            string `json:"secret"`
	Password          string `json:"password"`
	Host              string `json:"host"`
	Country           string `json:"country"`
	Region            string `json:"region"`
	Language          string `json:"language"`
	EventType         string `json:"eventType"`
	ActivatorEmail    string `json:"activatorEmail"`
	ActivatorUsername string `json:"activatorUsername"`
	SchoolEmail       string `json:"schoolEmail"`
	SchoolPhoneNumber string `json:"schoolPhoneNumber"`
}

// deactivationPayload is the deactivation webhook body. Type is the older
// field name of help.untis.at's spec, sent instead of EventType on request.
type deactivationPayload struct {
	TenantID   string `json:"tenantId"`
	EventType  string `json:"eventType,omitempty"`
	Type       string `json:"type,omitempty"`
	ReasonType string `json:"reasonType"`
	ReasonText string `json:"reasonText"`
}

// DeactivationOptions tune a deactivation webhook.
type DeactivationOptions struct {
	// Deletion sends DELETION (the app was deleted) instead of DEACTIVATION.
	Deletion bool
	// ReasonType defaults to NO_REASON; others are SCHOOL_DEACTIVATION,
	// SCHOOL_DELETION, REMOTE_DEACTIVATION, REMOTE_DELETION.
	ReasonType string
	// ReasonText defaults to a sentence like the documented example.
	ReasonText string
	// LegacyTypeField sends the event as "type" (help.untis.at's spec)
	// instead of "eventType".
	LegacyTypeField bool
}

// SignWebhook signs body like the platform does and returns the values of
// the Authorization and Algorithm headers.
func (s *Sim) SignWebhook(body []byte) (authorization, algorithm string) {
	sum := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.webhookKey, crypto.SHA256, sum[:])
	if err != nil {
		// Signing with a valid in-memory RSA key cannot fail short of a
		// broken random source.
		panic(fmt.Sprintf("platformsim: sign webhook: %v", err))
	}
	return base64.StdEncoding.EncodeToString(sig), WebhookAlgorithm
}

// Activate sends a CREATED credentials webhook with the tenant's current
// credentials: the school admin activated the app.
func (s *Sim) Activate(ctx context.Context, tenantID string) (*WebhookResult, error) {
	return s.sendCredentials(ctx, tenantID, EventCreated, false)
}

// Reactivate gives the tenant a fresh secret and password and sends them
// in a REACTIVATED webhook.
func (s *Sim) Reactivate(ctx context.Context, tenantID string) (*WebhookResult, error) {
	return s.sendCredentials(ctx, tenantID, EventReactivated, true)
}

// Reset gives the tenant a fresh secret and password (the old password
// stops working at once) and sends them in a RESET webhook.
func (s *Sim) Reset(ctx context.Context, tenantID string) (*WebhookResult, error) {
	return s.sendCredentials(ctx, tenantID, EventReset, true)
}

func (s *Sim) sendCredentials(ctx context.Context, tenantID, event string, fresh bool) (*WebhookResult, error) {
	host := s.BaseURL()
	if u, err := url.Parse(host); err == nil && u.Host != "" {
		host = u.Host
	}
	s.mu.Lock()
	t := s.tenants[tenantID]
	if t == nil {
		s.mu.Unlock()
		return nil, ErrUnknownTenant
	}
	if fresh {
		t.secret, t.password = randomToken(24), randomToken(24)
	}
	t.status = StatusActive
	p := credentialsPayload{
		TenantID: t.id, ClientID: t.clientID, Secret: t.secret, Password: t.password,
		Host: host, Country: t.country, Region: t.region, Language: t.language, EventType: event,
		SchoolEmail: "office@" + t.slug + ".example", SchoolPhoneNumber: "+43 1 234 56 78",
	}
	for _, u := range t.roster.users {
		if u.Role == RoleAdministrator {
			p.ActivatorEmail, p.ActivatorUsername = u.Email, u.GivenName+" "+u.FamilyName
			break
		}
	}
	s.mu.Unlock()
	s.saveState()
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("platformsim: marshal credentials webhook: %w", err)
	}
	return s.deliver(ctx, tenantID, s.PartnerURL()+s.credentialsPath, event, body)
}

// ReactivateWithoutWebhook gives the tenant a fresh secret and password and
// makes its app active again, but sends no webhook: the school admin
// reactivated the app and the partner must be given the credentials by hand
// (onboarding scenario 3).
func (s *Sim) ReactivateWithoutWebhook(tenantID string) error {
	s.mu.Lock()
	t := s.tenants[tenantID]
	if t == nil {
		s.mu.Unlock()
		return ErrUnknownTenant
	}
	t.secret, t.password = randomToken(24), randomToken(24)
	t.status = StatusActive
	t.lastResult, t.lastResultErr = nil, ""
	s.mu.Unlock()
	s.saveState()
	return nil
}

// Deactivate sends a DEACTIVATION (or, with deletion, DELETION) webhook.
// From then on the tenant's credentials and tokens stop working.
func (s *Sim) Deactivate(ctx context.Context, tenantID string, deletion bool) (*WebhookResult, error) {
	return s.DeactivateWith(ctx, tenantID, DeactivationOptions{Deletion: deletion})
}

// DeactivateWith is Deactivate with the reason and field name chosen.
func (s *Sim) DeactivateWith(ctx context.Context, tenantID string, opt DeactivationOptions) (*WebhookResult, error) {
	event, status := EventDeactivation, StatusDeactivated
	text := "The tenant requested deactivation."
	if opt.Deletion {
		event, status = EventDeletion, StatusDeleted
		text = "The tenant requested deletion."
	}
	p := deactivationPayload{
		TenantID: tenantID, ReasonType: orDefault(opt.ReasonType, "NO_REASON"), ReasonText: orDefault(opt.ReasonText, text),
	}
	if opt.LegacyTypeField {
		p.Type = event
	} else {
		p.EventType = event
	}
	s.mu.Lock()
	t := s.tenants[tenantID]
	if t == nil {
		s.mu.Unlock()
		return nil, ErrUnknownTenant
	}
	t.status = status
	// Tokens issued before must stay dead if the school reactivates.
	t.tokenEpoch++
	s.mu.Unlock()
	s.saveState()
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("platformsim: marshal deactivation webhook: %w", err)
	}
	return s.deliver(ctx, tenantID, s.PartnerURL()+s.deactivationPath, event, body)
}

// ReplayLastWebhook resends the tenant's last webhook with the same bytes
// and headers: a duplicate delivery, or an attacker replaying a capture.
func (s *Sim) ReplayLastWebhook(ctx context.Context, tenantID string) (*WebhookResult, error) {
	s.mu.Lock()
	t := s.tenants[tenantID]
	if t == nil {
		s.mu.Unlock()
		return nil, ErrUnknownTenant
	}
	last := t.lastWebhook
	s.mu.Unlock()
	if last == nil {
		return nil, fmt.Errorf("platformsim: tenant %s: no webhook sent yet", tenantID)
	}
	return s.post(ctx, tenantID, last, true)
}

// deliver signs body and posts it to url.
func (s *Sim) deliver(ctx context.Context, tenantID, url, event string, body []byte) (*WebhookResult, error) {
	auth, alg := s.SignWebhook(body)
	sw := &sentWebhook{url: url, eventType: event, body: body, authorization: auth, algorithm: alg}
	s.mu.Lock()
	s.tenants[tenantID].lastWebhook = sw
	s.mu.Unlock()
	return s.post(ctx, tenantID, sw, false)
}

func (s *Sim) post(ctx context.Context, tenantID string, sw *sentWebhook, replay bool) (*WebhookResult, error) {
	res := &WebhookResult{EventType: sw.eventType, URL: sw.url, Replay: replay, Time: s.Now(), Body: sw.body}
	err := s.doPost(ctx, sw, res)
	s.mu.Lock()
	s.stats.webhooks++
	t := s.tenants[tenantID]
	if err != nil {
		t.lastResult, t.lastResultErr = nil, err.Error()
	} else {
		t.lastResult, t.lastResultErr = res, ""
	}
	s.mu.Unlock()
	log := s.log.With("tenant_id", tenantID, "event", sw.eventType, "url", sw.url, "replay", replay)
	if err != nil {
		log.Warn("platformsim: webhook delivery failed", "err", err)
		return nil, err
	}
	log.Info("platformsim: webhook delivered", "status", res.Status)
	return res, nil
}

func (s *Sim) doPost(ctx context.Context, sw *sentWebhook, res *WebhookResult) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sw.url, bytes.NewReader(sw.body))
	if err != nil {
		return fmt.Errorf("platformsim: webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", sw.authorization)
	req.Header.Set("Algorithm", sw.algorithm)
	req.Header.Set("User-Agent", "platformsim (Untis Platform simulator)")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("platformsim: send %s webhook: %w", sw.eventType, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer))
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("platformsim: read %s webhook answer: %w", sw.eventType, err)
	}
	res.Status, res.ResponseBody = resp.StatusCode, string(answer)
	return nil
}
