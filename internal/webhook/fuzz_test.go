package webhook_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/webhook"
)

// fuzzBodies seed both targets: the documented payloads and a few edges of Parse.
var fuzzBodies = []string{
	createdBody,
	deactivationBody,
	`{"tenantId":"12345","eventType":"RESET","clientId":"c","secret":"s","password":"p"}`,
	`{"tenantId":"12345","eventType":"REACTIVATED","clientId":"c","secret":"s","password":"p","schoolName":"HTL"}`,
	`{"tenantId":"12345","type":"DELETION","reasonType":"SCHOOL_DELETION"}`,
	`{"tenantId":"12345","eventType":"","type":"DEACTIVATION"}`,
	`{"tenantId":12345,"eventType":"DEACTIVATION"}`,
	`{"tenantId":"../x","eventType":"DEACTIVATION"}`,
	`{"tenantId":"1","eventType":"CREATED","clientId":"c","secret":"s","password":"p","host":"\u00e4\u00e4\u00e4\u0000\u009b"}`,
	`[]`,
	``,
}

// FuzzVerifyParse feeds arbitrary header values and bodies to a Verifier trusting two keys (a
// rotation) and then, as the handler would for a verified body, to Parse. Verify must never
// accept a body unless the signature is a genuine RSASSA-PKCS1-v1_5 SHA-256 signature of it by a
// trusted key (checked here with crypto/rsa directly), and must accept every genuine one.
func FuzzVerifyParse(f *testing.F) {
	k := keys()
	trusted := pubs(k.old, k.platform)
	v := webhook.NewVerifier(trusted)
	for _, b := range fuzzBodies {
		f.Add(webhook.Algorithm, sign(f, k.platform, []byte(b)), []byte(b))
	}
	body := []byte(createdBody)
	f.Add(webhook.Algorithm, sign(f, k.old, body), body)
	f.Add(webhook.Algorithm, sign(f, k.other, body), body)
	f.Add("SHA1withRSA", sign(f, k.platform, body), body)
	f.Add(webhook.Algorithm, base64.RawStdEncoding.EncodeToString(signRaw(f, k.platform, crypto.SHA256, body)), body)
	f.Add(webhook.Algorithm, base64.StdEncoding.EncodeToString(signRaw(f, k.platform, crypto.SHA1, body)), body)
	f.Add(webhook.Algorithm, sign(f, k.platform, body), body[:len(body)-1])
	f.Add("", "", []byte(nil))

	f.Fuzz(func(t *testing.T, algorithm, authorization string, body []byte) {
		err := v.Verify(algorithm, authorization, body)
		sum := sha256.Sum256(body)
		genuine := func(sig []byte) bool {
			for _, pk := range trusted {
				if rsa.VerifyPKCS1v15(pk, crypto.SHA256, sum[:], sig) == nil {
					return true
				}
			}
			return false
		}
		if err == nil {
			// Soundness: accepted ⇒ the right algorithm name and a genuine signature (decoded
			// leniently here, so the check does not just repeat Verify's own decoding).
			sig, derr := base64.StdEncoding.DecodeString(authorization)
			if algorithm != webhook.Algorithm || derr != nil || !genuine(sig) {
				t.Fatalf("Verify accepted algorithm %q, authorization %q for body %q", algorithm, authorization, body)
			}
		} else {
			checkSignatureError(t, err, authorization, body)
			if sig, derr := base64.StdEncoding.Strict().DecodeString(authorization); algorithm == webhook.Algorithm && derr == nil && genuine(sig) {
				t.Fatalf("Verify refused a genuine signature: %v", err)
			}
		}
		// The handler parses only verified bodies, but Parse must survive anything.
		ev, perr := webhook.Parse(body)
		checkParsed(t, ev, perr)
	})
}

// FuzzParse: Parse never panics, and what it accepts holds (checkParsed) a known type, a valid
// tenant id and, for credentials events, non-empty bounded credentials.
func FuzzParse(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Add([]byte(`{"tenantId":"1","eventType":"CREATED","clientId":"c","secret":"` + strings.Repeat("s", 1025) + `","password":"p"}`))
	f.Add([]byte(`{"tenantId":"1","eventType":"CREATED","clientId":"c","secret":"s","password":"p","schoolName":"a` + strings.Repeat("\u20ac", 100) + `"}`))
	f.Add([]byte(`{"TENANTID":"1","EventType":"DELETION"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := webhook.Parse(body)
		checkParsed(t, ev, err)
		var fe *webhook.FieldError
		if errors.As(err, &fe) && strings.Contains(fe.Error(), "\x00") {
			t.Fatalf("FieldError with a NUL: %q", fe.Error())
		}
	})
}
