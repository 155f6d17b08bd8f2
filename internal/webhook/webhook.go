// Package webhook verifies and parses the platform's signed webhooks (untis-platform-facts.md §6):
// the credentials webhook (CREATED, REACTIVATED, RESET) and the deactivation webhook
// (DEACTIVATION, DELETION). It knows nothing of HTTP routing or the store: Verify checks the
// signature over the raw body, and only a verified body is ever handed to Parse.
package webhook

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/store"
)

// MaxBody is the largest webhook body accepted (the documented payloads are well under 1 KiB).
const MaxBody = 64 << 10

// Algorithm is the only accepted value of the Algorithm header: Java's name for RSASSA-PKCS1-v1_5
// with SHA-256. The header never chooses the algorithm; anything else is refused.
const Algorithm = "SHA256withRSA"

// Event types.
const (
	Created      = "CREATED"
	Reactivated  = "REACTIVATED"
	Reset        = "RESET"
	Deactivation = "DEACTIVATION"
	Deletion     = "DELETION"
)

// ErrSignature is returned for a missing or wrong signature or algorithm. Callers answer 401 and
// say nothing more: the detail is for the log (Reason).
var ErrSignature = errors.New("webhook signature not valid")

// SignatureError says why a signature was refused, for the log only.
type SignatureError struct{ Reason string }

func (e *SignatureError) Error() string { return "webhook signature not valid: " + e.Reason }

// Is makes errors.Is(err, ErrSignature) true.
func (e *SignatureError) Is(target error) bool { return target == ErrSignature }

// ErrNotJSON is returned by Parse for a body that is not a JSON object.
var ErrNotJSON = errors.New("webhook body is not a JSON object")

// FieldError is a verified body that misses a required field or has one of the wrong form. Its
// message names the field and is safe to send back (it never quotes a value).
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q %s", e.Field, e.Problem) }

// Verifier checks signatures against the configured platform keys (UNTIS_WEBHOOK_KEYS): a body
// verifies when any one of them verifies it, so key rotation and both environments work.
type Verifier struct {
	keys []*rsa.PublicKey
}

// NewVerifier returns a Verifier for keys. It has no key to verify with when keys is empty, and
// then refuses every body.
func NewVerifier(keys []*rsa.PublicKey) *Verifier {
	return &Verifier{keys: keys}
}

// Verify checks the Algorithm and Authorization header values against body, the raw bytes as
// received. A signature is the base64 (standard alphabet, padded) of the RSASSA-PKCS1-v1_5
// signature of body's SHA-256, with no scheme prefix.
func (v *Verifier) Verify(algorithm, authorization string, body []byte) error {
	if algorithm == "" || authorization == "" {
		return &SignatureError{"missing Algorithm or Authorization header"}
	}
	if algorithm != Algorithm {
		return &SignatureError{"Algorithm is not " + Algorithm}
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(authorization)
	if err != nil {
		return &SignatureError{"Authorization is not base64"}
	}
	sum := sha256.Sum256(body)
	for _, k := range v.keys {
		// VerifyPKCS1v15 itself refuses a signature whose length is not the key's size.
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil {
			return nil
		}
	}
	return &SignatureError{"no configured key verifies the signature"}
}

// Info is what the credentials webhook tells about the school. It is stored and shown to
// operators, never used for an access decision, and Host never decides where secrets are sent.
type Info struct {
	Host, Country, Region, Language   string
	ActivatorEmail, ActivatorUsername string
	SchoolEmail, SchoolPhone          string
	SchoolName                        string // the deprecated v1 payload's schoolName
}

// Event is a parsed, verified webhook.
type Event struct {
	Type     string // Created, Reactivated, Reset, Deactivation or Deletion
	TenantID string

	// Credentials events.
	ClientID, Secret, Password string
	Info                       Info

	// Deactivation events.
	ReasonType, ReasonText string
}

// IsCredentials reports whether the event carries credentials (CREATED, REACTIVATED, RESET).
func (e Event) IsCredentials() bool {
	return e.Type == Created || e.Type == Reactivated || e.Type == Reset
}

// String and LogValue keep the secret and password out of every log line.
func (e Event) String() string {
	return fmt.Sprintf("webhook[%s tenant=%s]", e.Type, e.TenantID)
}

// GoString keeps the secrets out of %#v too.
func (e Event) GoString() string { return e.String() }

// MarshalJSON keeps the secrets out of any JSON an Event is written into.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"type": e.Type, "tenantId": e.TenantID})
}

// LogValue implements slog.LogValuer.
func (e Event) LogValue() slog.Value {
	return slog.GroupValue(slog.String("type", e.Type), slog.String("tenant_id", e.TenantID))
}

// payload is every field either webhook may carry. Unknown fields are ignored: the platform may
// add some.
type payload struct {
	EventType         *string `json:"eventType"`
	Type              *string `json:"type"` // help.untis.at's older name for eventType
	TenantID          *string `json:"tenantId"`
	ClientID          *string `json:"clientId"`
	Secret            *string `json:"secret"`
	Password          *string `json:"password"`
	Host              *string `json:"host"`
	Country           *string `json:"country"`
	Region            *string `json:"region"`
	Language          *string `json:"language"`
	ActivatorEmail    *string `json:"activatorEmail"`
	ActivatorUsername *string `json:"activatorUsername"`
	SchoolEmail       *string `json:"schoolEmail"`
	SchoolPhoneNumber *string `json:"schoolPhoneNumber"`
	SchoolName        *string `json:"schoolName"`
	ReasonType        *string `json:"reasonType"`
	ReasonText        *string `json:"reasonText"`
}

// Bounds of the fields we keep. Secrets are bounded too, so a signed but absurd body cannot make
// us store megabytes.
const (
	maxTenantID   = store.MaxTenantIDLen
	maxSecret     = 1024
	maxInfo       = 256
	maxReasonText = 1024
)

// Parse reads a verified body. Required: tenantId and the event type (eventType, or type where
// eventType is missing); for credentials events also clientId, secret and password.
func Parse(body []byte) (Event, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return Event{}, ErrNotJSON
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Event{}, &FieldError{Field: typeErr.Field, Problem: "must be a string"}
		}
		return Event{}, ErrNotJSON
	}
	var ev Event
	typ := p.EventType
	if typ == nil || *typ == "" {
		typ = p.Type
	}
	if typ == nil || *typ == "" {
		return Event{}, &FieldError{Field: "eventType", Problem: "is missing"}
	}
	switch *typ {
	case Created, Reactivated, Reset, Deactivation, Deletion:
		ev.Type = *typ
	default:
		return Event{}, &FieldError{Field: "eventType", Problem: "is not one of CREATED, REACTIVATED, RESET, DEACTIVATION, DELETION"}
	}
	tid, err := required("tenantId", p.TenantID, maxTenantID)
	if err != nil {
		return Event{}, err
	}
	if !store.ValidTenantID(tid) {
		return Event{}, &FieldError{Field: "tenantId", Problem: "must be 1 to 64 letters, digits, - or _"}
	}
	ev.TenantID = tid
	if ev.IsCredentials() {
		if ev.ClientID, err = required("clientId", p.ClientID, maxInfo); err != nil {
			return Event{}, err
		}
		if ev.Secret, err = required("secret", p.Secret, maxSecret); err != nil {
			return Event{}, err
		}
		if ev.Password, err = required("password", p.Password, maxSecret); err != nil {
			return Event{}, err
		}
		ev.Info = Info{
			Host: optional(p.Host, maxInfo), Country: optional(p.Country, maxInfo), Region: optional(p.Region, maxInfo),
			Language: optional(p.Language, maxInfo), ActivatorEmail: optional(p.ActivatorEmail, maxInfo),
			ActivatorUsername: optional(p.ActivatorUsername, maxInfo), SchoolEmail: optional(p.SchoolEmail, maxInfo),
			SchoolPhone: optional(p.SchoolPhoneNumber, maxInfo), SchoolName: optional(p.SchoolName, maxInfo),
		}
		return ev, nil
	}
	ev.ReasonType = optional(p.ReasonType, maxInfo)
	ev.ReasonText = optional(p.ReasonText, maxReasonText)
	return ev, nil
}

// required returns a present, non-blank field of at most max bytes, trimmed.
func required(name string, v *string, max int) (string, error) {
	if v == nil {
		return "", &FieldError{Field: name, Problem: "is missing"}
	}
	s := strings.TrimSpace(*v)
	if s == "" {
		return "", &FieldError{Field: name, Problem: "is empty"}
	}
	if len(s) > max {
		return "", &FieldError{Field: name, Problem: fmt.Sprintf("is longer than %d bytes", max)}
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", &FieldError{Field: name, Problem: "contains control characters"}
	}
	return s, nil
}

// optional returns an informational field, trimmed, cut to max bytes (on a rune boundary) and
// without control characters or format characters (Unicode category Cf: bidirectional overrides
// and isolates, zero-width characters, ...), the rule the launch context follows too: it is only
// ever shown to operators, and a shown name must not lie about its order or hide characters.
func optional(v *string, max int) string {
	if v == nil {
		return ""
	}
	s := strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return -1
		}
		return r
	}, *v))
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) { // cut inside the last rune: drop its bytes
			s = s[:len(s)-1]
		}
	}
	return s
}
