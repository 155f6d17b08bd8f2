package webhook_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/webhook"
)

// kibBody is a credentials webhook of exactly 1 KiB, the documented fields with long values.
func kibBody(tb testing.TB) []byte {
	tb.Helper()
	m := map[string]string{
		"tenantId": "12345", "eventType": "RESET",
		"clientId": "client-" + strings.Repeat("c", 40), "secret": strings.Repeat("S", 64), "password": strings.Repeat("P", 64),
		"host": "school.integration.webuntis.dev", "country": "AT", "region": "AT-3", "language": "de",
		"activatorEmail": "jane@doe.com", "activatorUsername": "Jane Doe", "schoolEmail": "office@school.example",
		"schoolPhoneNumber": "555 / 123 456 789", "schoolName": "",
	}
	b, _ := json.Marshal(m)
	m["schoolName"] = strings.Repeat("Höhere Technische Lehranstalt ", 20)[:1024-len(b)]
	b, err := json.Marshal(m)
	if err != nil || len(b) != 1024 {
		tb.Fatalf("body of %d bytes, %v", len(b), err)
	}
	if _, err := webhook.Parse(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkVerifyParse is the handler's work on a webhook: the signature, then the body.
func BenchmarkVerifyParse(b *testing.B) {
	k := keys()
	body := kibBody(b)
	v := webhook.NewVerifier(pubs(k.platform))
	sig := sign(b, k.platform, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(webhook.Algorithm, sig, body); err != nil {
			b.Fatal(err)
		}
		if _, err := webhook.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyParseRotation: during a key rotation the old key, listed first, is tried in vain.
func BenchmarkVerifyParseRotation(b *testing.B) {
	k := keys()
	body := kibBody(b)
	v := webhook.NewVerifier(pubs(k.old, k.platform))
	sig := sign(b, k.platform, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(webhook.Algorithm, sig, body); err != nil {
			b.Fatal(err)
		}
		if _, err := webhook.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := keys()
	body := kibBody(b)
	v := webhook.NewVerifier(pubs(k.platform))
	sig := sign(b, k.platform, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(webhook.Algorithm, sig, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRefused is a forged body against a rotation: every key is tried.
func BenchmarkVerifyRefused(b *testing.B) {
	k := keys()
	body := kibBody(b)
	v := webhook.NewVerifier(pubs(k.old, k.platform))
	sig := sign(b, k.other, body)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(webhook.Algorithm, sig, body); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	body := kibBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := webhook.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}
