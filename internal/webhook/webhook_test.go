package webhook_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// The test keys are committed RSA-2048 keys (testdata/test_*_key.pem, test use only), loaded once
// per test binary: the tables, the fuzz seeds and the benchmarks all sign with them, so no test
// ever generates a key and every signature (PKCS #1 v1.5 is deterministic) is reproducible.
type testKeys struct {
	platform *rsa.PrivateKey // the platform's current key
	old      *rsa.PrivateKey // the key it rotated away from
	other    *rsa.PrivateKey // nobody we trust
}

var keys = sync.OnceValue(func() testKeys {
	load := func(name string) *rsa.PrivateKey {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			panic(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			panic("no PEM block in " + name)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			panic(fmt.Sprintf("%s: %v", name, err))
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok || rk.N.BitLen() != 2048 {
			panic(name + " is not an RSA-2048 key")
		}
		return rk
	}
	return testKeys{
		platform: load("test_platform_key.pem"),
		old:      load("test_old_key.pem"),
		other:    load("test_other_key.pem"),
	}
})

// sign is what the platform puts in the Authorization header: the standard, padded base64 of the
// RSASSA-PKCS1-v1_5 SHA-256 signature of the raw body.
func sign(tb testing.TB, k *rsa.PrivateKey, body []byte) string {
	tb.Helper()
	return base64.StdEncoding.EncodeToString(signRaw(tb, k, crypto.SHA256, body))
}

func signRaw(tb testing.TB, k *rsa.PrivateKey, h crypto.Hash, body []byte) []byte {
	tb.Helper()
	var digest []byte
	switch h {
	case crypto.SHA1:
		s := sha1.Sum(body)
		digest = s[:]
	case crypto.SHA256:
		s := sha256.Sum256(body)
		digest = s[:]
	case crypto.SHA512:
		s := sha512.Sum512(body)
		digest = s[:]
	default:
		tb.Fatalf("no digest for %v", h)
	}
	sig, err := rsa.SignPKCS1v15(nil, k, h, digest)
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

// createdBody is the documented v2 CREATED payload (untis-platform-facts.md §6.2), byte for byte.
const createdBody = `{
  "tenantId": "12345",
  "clientId": "test-client-id",
  "secret": "test-secret",
  "password": "test-password",
  "host": "localhost",
  "country": "AT",
  "region": "AT-3",
  "language": "de",
  "eventType": "CREATED",
  "activatorEmail": "jane@doe.com",
  "activatorUsername": "Jane Doe",
  "schoolEmail": "school@entenhausen.com",
  "schoolPhoneNumber": "555 / 123 456 789"
}`

// deactivationBody is the documented deactivation payload (§6.3).
const deactivationBody = `{ "tenantId": "12345", "eventType": "DEACTIVATION", "reasonType": "NO_REASON",
  "reasonText": "The tenant requested deactivation." }`

func pubs(ks ...*rsa.PrivateKey) []*rsa.PublicKey {
	out := make([]*rsa.PublicKey, len(ks))
	for i, k := range ks {
		out[i] = &k.PublicKey
	}
	return out
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestVerify(t *testing.T) {
	t.Parallel()
	k := keys()
	body := []byte(createdBody)
	good := sign(t, k.platform, body)
	goodRaw, _ := base64.StdEncoding.DecodeString(good)
	if !strings.ContainsAny(good, "+/") || !strings.HasSuffix(good, "=") {
		t.Fatalf("the test signature %q has no '+', '/' or padding: the URL-safe and unpadded cases below test nothing", good)
	}
	// The signature value plus the modulus: the same number mod n, but not the key's size.
	plusN := new(big.Int).Add(new(big.Int).SetBytes(goodRaw), k.platform.N).Bytes()
	pss, err := rsa.SignPSS(rand.Reader, k.platform, crypto.SHA256, func() []byte { s := sha256.Sum256(body); return s[:] }(),
		&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		t.Fatal(err)
	}
	// A raw PKCS #1 v1.5 signature of the bare digest, without the SHA-256 DigestInfo prefix.
	sum := sha256.Sum256(body)
	bare, err := rsa.SignPKCS1v15(nil, k.platform, 0, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	current := pubs(k.platform)
	rotation := pubs(k.old, k.platform)

	tests := []struct {
		name      string
		keys      []*rsa.PublicKey
		algorithm string
		auth      string
		body      []byte
		ok        bool
	}{
		{name: "valid", keys: current, algorithm: "SHA256withRSA", auth: good, body: body, ok: true},
		{name: "valid, empty body", keys: current, algorithm: "SHA256withRSA", auth: sign(t, k.platform, nil), body: nil, ok: true},
		{name: "valid deactivation", keys: current, algorithm: "SHA256withRSA", auth: sign(t, k.platform, []byte(deactivationBody)), body: []byte(deactivationBody), ok: true},

		{name: "missing Algorithm", keys: current, algorithm: "", auth: good, body: body},
		{name: "missing Authorization", keys: current, algorithm: "SHA256withRSA", auth: "", body: body},
		{name: "missing both", keys: current, body: body},

		{name: "algorithm SHA1withRSA", keys: current, algorithm: "SHA1withRSA", auth: good, body: body},
		{name: "algorithm none", keys: current, algorithm: "none", auth: good, body: body},
		{name: "algorithm lower case", keys: current, algorithm: "sha256withrsa", auth: good, body: body},
		{name: "algorithm trailing space", keys: current, algorithm: "SHA256withRSA ", auth: good, body: body},
		{name: "algorithm leading space", keys: current, algorithm: " SHA256withRSA", auth: good, body: body},
		{name: "algorithm RS256", keys: current, algorithm: "RS256", auth: good, body: body},
		{name: "algorithm SHA256 (MOODLE's other name)", keys: current, algorithm: "SHA256", auth: good, body: body},
		{name: "algorithm SHA512withRSA", keys: current, algorithm: "SHA512withRSA", auth: b64(signRaw(t, k.platform, crypto.SHA512, body)), body: body},
		{name: "algorithm with NUL", keys: current, algorithm: "SHA256withRSA\x00", auth: good, body: body},

		{name: "bad base64", keys: current, algorithm: "SHA256withRSA", auth: "not base64!", body: body},
		{name: "bad base64, one char changed to '*'", keys: current, algorithm: "SHA256withRSA", auth: "*" + good[1:], body: body},
		{name: "URL-safe base64", keys: current, algorithm: "SHA256withRSA", auth: base64.URLEncoding.EncodeToString(goodRaw), body: body},
		{name: "unpadded base64", keys: current, algorithm: "SHA256withRSA", auth: base64.RawStdEncoding.EncodeToString(goodRaw), body: body},
		{name: "unpadded URL-safe base64", keys: current, algorithm: "SHA256withRSA", auth: base64.RawURLEncoding.EncodeToString(goodRaw), body: body},
		{name: "extra padding", keys: current, algorithm: "SHA256withRSA", auth: good + "=", body: body},
		{name: "non-zero padding bits", keys: current, algorithm: "SHA256withRSA", auth: nonCanonical(good), body: body},
		{name: "scheme prefix", keys: current, algorithm: "SHA256withRSA", auth: "Bearer " + good, body: body},
		{name: "leading space", keys: current, algorithm: "SHA256withRSA", auth: " " + good, body: body},
		{name: "trailing space", keys: current, algorithm: "SHA256withRSA", auth: good + " ", body: body},
		{name: "hex instead of base64", keys: current, algorithm: "SHA256withRSA", auth: fmt.Sprintf("%x", goodRaw), body: body},

		{name: "truncated base64 (last 4 chars)", keys: current, algorithm: "SHA256withRSA", auth: good[:len(good)-4], body: body},
		{name: "truncated signature (255 bytes)", keys: current, algorithm: "SHA256withRSA", auth: b64(goodRaw[:255]), body: body},
		{name: "signature with a zero byte in front", keys: current, algorithm: "SHA256withRSA", auth: b64(append([]byte{0}, goodRaw...)), body: body},
		{name: "signature plus modulus", keys: current, algorithm: "SHA256withRSA", auth: b64(plusN), body: body},
		{name: "all-zero signature", keys: current, algorithm: "SHA256withRSA", auth: b64(make([]byte, 256)), body: body},
		{name: "signature bit flipped", keys: current, algorithm: "SHA256withRSA", auth: b64(flip(goodRaw, 100)), body: body},
		{name: "signature twice", keys: current, algorithm: "SHA256withRSA", auth: good + good, body: body},

		{name: "signed by another key", keys: current, algorithm: "SHA256withRSA", auth: sign(t, k.other, body), body: body},
		{name: "signature of another body", keys: current, algorithm: "SHA256withRSA", auth: sign(t, k.platform, []byte(deactivationBody)), body: body},
		{name: "body byte 0 changed", keys: current, algorithm: "SHA256withRSA", auth: good, body: flip(body, 0)},
		{name: "body byte 1 changed", keys: current, algorithm: "SHA256withRSA", auth: good, body: flip(body, 1)},
		{name: "body middle byte changed", keys: current, algorithm: "SHA256withRSA", auth: good, body: flip(body, len(body)/2)},
		{name: "body secret byte changed", keys: current, algorithm: "SHA256withRSA", auth: good, body: flip(body, bytes.Index(body, []byte("test-secret"))+5)},
		{name: "body last byte changed", keys: current, algorithm: "SHA256withRSA", auth: good, body: flip(body, len(body)-1)},
		{name: "body with a newline appended", keys: current, algorithm: "SHA256withRSA", auth: good, body: append(bytes.Clone(body), '\n')},
		{name: "body truncated by one byte", keys: current, algorithm: "SHA256withRSA", auth: good, body: body[:len(body)-1]},
		{name: "body re-encoded compactly", keys: current, algorithm: "SHA256withRSA", auth: good, body: compact(t, body)},
		{name: "empty body", keys: current, algorithm: "SHA256withRSA", auth: good, body: nil},

		{name: "rotation: signed by the new key", keys: rotation, algorithm: "SHA256withRSA", auth: good, body: body, ok: true},
		{name: "rotation: signed by the old key", keys: rotation, algorithm: "SHA256withRSA", auth: sign(t, k.old, body), body: body, ok: true},
		{name: "rotation: new key listed first, signed by old", keys: pubs(k.platform, k.old), algorithm: "SHA256withRSA", auth: sign(t, k.old, body), body: body, ok: true},
		{name: "rotation: signed by neither", keys: rotation, algorithm: "SHA256withRSA", auth: sign(t, k.other, body), body: body},
		{name: "rotation: old key's signature, body changed", keys: rotation, algorithm: "SHA256withRSA", auth: sign(t, k.old, body), body: flip(body, 10)},
		{name: "old key no longer configured", keys: current, algorithm: "SHA256withRSA", auth: sign(t, k.old, body), body: body},

		{name: "no keys (nil)", keys: nil, algorithm: "SHA256withRSA", auth: good, body: body},
		{name: "no keys (empty)", keys: []*rsa.PublicKey{}, algorithm: "SHA256withRSA", auth: good, body: body},

		{name: "SHA-1 PKCS1v15 under the right key", keys: current, algorithm: "SHA256withRSA", auth: b64(signRaw(t, k.platform, crypto.SHA1, body)), body: body},
		{name: "SHA-1 PKCS1v15 with Algorithm SHA1withRSA", keys: current, algorithm: "SHA1withRSA", auth: b64(signRaw(t, k.platform, crypto.SHA1, body)), body: body},
		{name: "SHA-512 PKCS1v15 under the right key", keys: current, algorithm: "SHA256withRSA", auth: b64(signRaw(t, k.platform, crypto.SHA512, body)), body: body},
		{name: "PKCS1v15 of the bare digest (no DigestInfo)", keys: current, algorithm: "SHA256withRSA", auth: b64(bare), body: body},
		{name: "PSS SHA-256 under the right key", keys: current, algorithm: "SHA256withRSA", auth: b64(pss), body: body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := webhook.NewVerifier(tt.keys).Verify(tt.algorithm, tt.auth, tt.body)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Verify accepted it")
			}
			checkSignatureError(t, err, tt.auth, tt.body)
			// The reason, for the log, tells the first thing wrong.
			var se *webhook.SignatureError
			errors.As(err, &se)
			switch {
			case tt.algorithm == "" || tt.auth == "":
				if !strings.Contains(se.Reason, "missing") {
					t.Errorf("reason %q, want a missing header", se.Reason)
				}
			case tt.algorithm != webhook.Algorithm:
				if !strings.Contains(se.Reason, "Algorithm is not") {
					t.Errorf("reason %q, want a wrong algorithm", se.Reason)
				}
			}
		})
	}
}

// checkSignatureError: a refusal is ErrSignature, says why for the log, and never repeats the
// signature or the body.
func checkSignatureError(t testing.TB, err error, auth string, body []byte) {
	t.Helper()
	if !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("errors.Is(%v, ErrSignature) = false", err)
	}
	var se *webhook.SignatureError
	if !errors.As(err, &se) || se.Reason == "" {
		t.Fatalf("%v: not a *SignatureError with a reason", err)
	}
	msg := err.Error()
	if !strings.Contains("\n"+signatureMessages+"\n", "\n"+msg+"\n") {
		t.Fatalf("error %q is not one of Verify's fixed messages", msg)
	}
	// (The fuzzer may submit words of the fixed messages themselves as a signature or body.)
	if len(auth) >= 8 && strings.Contains(msg, auth) && !strings.Contains(signatureMessages, auth) {
		t.Fatalf("error %q contains the signature", msg)
	}
	if len(body) >= 8 && strings.Contains(msg, string(body)) && !strings.Contains(signatureMessages, string(body)) {
		t.Fatalf("error %q contains the body", msg)
	}
	for _, s := range []string{"test-secret", "test-password", "12345", "{"} {
		if bytes.Contains(body, []byte(s)) && strings.Contains(msg, s) {
			t.Fatalf("error %q contains %q from the body", msg, s)
		}
	}
}

// signatureMessages are the messages Verify may give, whatever its input.
const signatureMessages = `webhook signature not valid: missing Algorithm or Authorization header
webhook signature not valid: Algorithm is not SHA256withRSA
webhook signature not valid: Authorization is not base64
webhook signature not valid: no configured key verifies the signature`

// nonCanonical changes the unused low bits before the padding, which a lenient decoder ignores.
func nonCanonical(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.IndexByte(s, '=') - 1
	c := strings.IndexByte(alphabet, s[i])
	return s[:i] + string(alphabet[c^1]) + s[i+1:]
}

func compact(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestNonCanonicalHelper(t *testing.T) {
	t.Parallel()
	good := sign(t, keys().platform, []byte(createdBody))
	nc := nonCanonical(good)
	a, err1 := base64.StdEncoding.DecodeString(good)
	b, err2 := base64.StdEncoding.DecodeString(nc)
	if nc == good || err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Fatalf("nonCanonical does not give another lenient encoding of the same bytes")
	}
}

// credentials is a CREATED body with the given changes; a nil value deletes the key.
func credentials(changes map[string]any) string {
	m := map[string]any{
		"tenantId": "12345", "clientId": "test-client-id", "secret": "test-secret", "password": "test-password",
		"eventType": "CREATED",
	}
	for k, v := range changes {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func deactivation(changes map[string]any) string {
	m := map[string]any{"tenantId": "12345", "eventType": "DEACTIVATION"}
	for k, v := range changes {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParse(t *testing.T) {
	t.Parallel()
	createdEvent := webhook.Event{
		Type: webhook.Created, TenantID: "12345",
		ClientID: "test-client-id", Secret: "test-secret", Password: "test-password",
		Info: webhook.Info{
			Host: "localhost", Country: "AT", Region: "AT-3", Language: "de",
			ActivatorEmail: "jane@doe.com", ActivatorUsername: "Jane Doe",
			SchoolEmail: "school@entenhausen.com", SchoolPhone: "555 / 123 456 789",
		},
	}
	minimal := func(typ string) webhook.Event {
		return webhook.Event{Type: typ, TenantID: "12345", ClientID: "test-client-id", Secret: "test-secret", Password: "test-password"}
	}
	long := func(r string, n int) string { return strings.Repeat(r, n) }
	tid64 := long("7", 64)

	tests := []struct {
		name    string
		body    string
		want    webhook.Event
		notJSON bool
		field   string // the *FieldError's field
		problem string // in its message
	}{
		{name: "documented CREATED", body: createdBody, want: createdEvent},
		{name: "documented CREATED, compact, with surrounding whitespace", body: " \r\n\t" + string(compact(t, []byte(createdBody))) + "\n", want: createdEvent},
		{name: "REACTIVATED", body: credentials(map[string]any{"eventType": "REACTIVATED"}), want: minimal(webhook.Reactivated)},
		{name: "RESET", body: credentials(map[string]any{"eventType": "RESET"}), want: minimal(webhook.Reset)},
		{name: "v1 payload with schoolName and no eventType but type", body: credentials(map[string]any{"eventType": nil, "type": "CREATED", "schoolName": "HTL Entenhausen", "host": "https://tom.integration.webuntis.dev"}),
			want: func() webhook.Event {
				e := minimal(webhook.Created)
				e.Info.SchoolName, e.Info.Host = "HTL Entenhausen", "https://tom.integration.webuntis.dev"
				return e
			}()},
		{name: "documented DEACTIVATION", body: deactivationBody,
			want: webhook.Event{Type: webhook.Deactivation, TenantID: "12345", ReasonType: "NO_REASON", ReasonText: "The tenant requested deactivation."}},
		{name: "DELETION", body: deactivation(map[string]any{"eventType": "DELETION", "reasonType": "SCHOOL_DELETION"}),
			want: webhook.Event{Type: webhook.Deletion, TenantID: "12345", ReasonType: "SCHOOL_DELETION"}},
		{name: "DEACTIVATION with the older type field only", body: deactivation(map[string]any{"eventType": nil, "type": "DEACTIVATION", "reasonType": "REMOTE_DEACTIVATION"}),
			want: webhook.Event{Type: webhook.Deactivation, TenantID: "12345", ReasonType: "REMOTE_DEACTIVATION"}},
		{name: "DELETION with the older type field only", body: deactivation(map[string]any{"eventType": nil, "type": "DELETION"}),
			want: webhook.Event{Type: webhook.Deletion, TenantID: "12345"}},
		{name: "eventType empty, type set", body: deactivation(map[string]any{"eventType": "", "type": "DELETION"}),
			want: webhook.Event{Type: webhook.Deletion, TenantID: "12345"}},
		{name: "eventType null, type set", body: `{"tenantId":"12345","eventType":null,"type":"DELETION"}`,
			want: webhook.Event{Type: webhook.Deletion, TenantID: "12345"}},
		{name: "eventType wins over type", body: deactivation(map[string]any{"eventType": "DEACTIVATION", "type": "DELETION"}),
			want: webhook.Event{Type: webhook.Deactivation, TenantID: "12345"}},
		{name: "deactivation ignores credentials fields", body: deactivation(map[string]any{"clientId": "c", "secret": "s", "password": "p", "host": "h"}),
			want: webhook.Event{Type: webhook.Deactivation, TenantID: "12345"}},
		{name: "credentials ignore reason fields", body: credentials(map[string]any{"reasonType": "NO_REASON", "reasonText": "x"}), want: minimal(webhook.Created)},
		{name: "unknown fields ignored", body: credentials(map[string]any{"newField": "x", "nested": map[string]any{"a": []int{1, 2}}, "count": 3, "flag": true, "nothing": nil}),
			want: minimal(webhook.Created)},
		{name: "required values trimmed", body: credentials(map[string]any{"tenantId": " 12345\t", "clientId": " test-client-id ", "secret": "\ntest-secret\n", "password": " test-password "}),
			want: minimal(webhook.Created)},
		{name: "tenantId of 64 characters", body: credentials(map[string]any{"tenantId": tid64}),
			want: func() webhook.Event { e := minimal(webhook.Created); e.TenantID = tid64; return e }()},
		{name: "tenantId with letters, -, _", body: deactivation(map[string]any{"tenantId": "int-Test_1"}),
			want: webhook.Event{Type: webhook.Deactivation, TenantID: "int-Test_1"}},
		{name: "secret and password of 1024 bytes", body: credentials(map[string]any{"secret": long("s", 1024), "password": long("p", 1024)}),
			want: func() webhook.Event {
				e := minimal(webhook.Created)
				e.Secret, e.Password = long("s", 1024), long("p", 1024)
				return e
			}()},
		{name: "info: control characters removed, trimmed", body: credentials(map[string]any{
			"activatorUsername": " Jane\x00 Doe\x7f\u0085\u009b\x1b[31m ", "country": "\tAT\r\n", "reasonText": "ignored"}),
			want: func() webhook.Event {
				e := minimal(webhook.Created)
				e.Info.ActivatorUsername, e.Info.Country = "Jane Doe[31m", "AT"
				return e
			}()},
		{name: "info: cut at 256 bytes on a rune boundary (2-byte runes)", body: credentials(map[string]any{"schoolName": "a" + long("ä", 200)}),
			want: func() webhook.Event {
				e := minimal(webhook.Created)
				e.Info.SchoolName = "a" + long("ä", 127)
				return e
			}()},
		{name: "info: cut at 256 bytes on a rune boundary (3-byte runes)", body: credentials(map[string]any{"host": long("€", 100)}),
			want: func() webhook.Event { e := minimal(webhook.Created); e.Info.Host = long("€", 85); return e }()},
		{name: "info: cut at 256 bytes, 4-byte runes fitting exactly", body: credentials(map[string]any{"region": long("😀", 65)}),
			want: func() webhook.Event { e := minimal(webhook.Created); e.Info.Region = long("😀", 64); return e }()},
		{name: "info: 4-byte runes off by one", body: credentials(map[string]any{"language": "ab" + long("😀", 65)}),
			want: func() webhook.Event {
				e := minimal(webhook.Created)
				e.Info.Language = "ab" + long("😀", 63)
				return e
			}()},
		{name: "info: format characters (Cf) removed", body: credentials(map[string]any{
			"schoolName": "\u202eloohcS\u202c Nord\u200b", "schoolPhoneNumber": "\u2066+43 1 234\u2069\u200d", "activatorEmail": "\ufeffjane@school.example",
			"region": "Wien\u00ad\u2028", "host": "\u200bschool.webuntis.com"}),
			want: func() webhook.Event {
				e := minimal(webhook.Created)
				e.Info.SchoolName, e.Info.SchoolPhone, e.Info.ActivatorEmail = "loohcS Nord", "+43 1 234", "jane@school.example"
				e.Info.Region, e.Info.Host = "Wien", "school.webuntis.com"
				return e
			}()},
		{name: "reasonText: format characters removed", body: deactivation(map[string]any{"reasonText": "Vertrag \u202egekündigt", "reasonType": "\u200bEND"}),
			want: webhook.Event{Type: webhook.Deactivation, TenantID: "12345", ReasonText: "Vertrag gekündigt", ReasonType: "END"}},
		{name: "info: control characters removed before the cut", body: credentials(map[string]any{"schoolEmail": long("\x01", 300) + long("x", 10)}),
			want: func() webhook.Event { e := minimal(webhook.Created); e.Info.SchoolEmail = long("x", 10); return e }()},
		{name: "reasonText cut at 1024 bytes on a rune boundary", body: deactivation(map[string]any{"reasonText": "a" + long("😀", 300), "reasonType": long("R", 300)}),
			want: webhook.Event{Type: webhook.Deactivation, TenantID: "12345", ReasonText: "a" + long("😀", 255), ReasonType: long("R", 256)}},
		{name: "invalid UTF-8 in an info field becomes U+FFFD", body: `{"tenantId":"1","eventType":"CREATED","clientId":"c","secret":"s","password":"p","host":"a` + "\xff" + `b"}`,
			want: webhook.Event{Type: webhook.Created, TenantID: "1", ClientID: "c", Secret: "s", Password: "p", Info: webhook.Info{Host: "a\uFFFDb"}}},

		{name: "not JSON", body: "tenantId=12345&eventType=CREATED", notJSON: true},
		{name: "empty body", body: "", notJSON: true},
		{name: "whitespace body", body: " \n\t ", notJSON: true},
		{name: "JSON array", body: "[" + createdBody + "]", notJSON: true},
		{name: "JSON string", body: `"CREATED"`, notJSON: true},
		{name: "JSON null", body: `null`, notJSON: true},
		{name: "JSON number", body: `12345`, notJSON: true},
		{name: "truncated object", body: createdBody[:len(createdBody)-2], notJSON: true},
		{name: "two objects", body: deactivationBody + deactivationBody, notJSON: true},
		{name: "trailing garbage", body: deactivationBody + " x", notJSON: true},
		{name: "BOM", body: "\uFEFF" + deactivationBody, notJSON: true},

		{name: "empty object", body: `{}`, field: "eventType", problem: "is missing"},
		{name: "missing eventType", body: credentials(map[string]any{"eventType": nil}), field: "eventType", problem: "is missing"},
		{name: "eventType and type empty", body: credentials(map[string]any{"eventType": "", "type": ""}), field: "eventType", problem: "is missing"},
		{name: "unknown eventType", body: credentials(map[string]any{"eventType": "UPDATED"}), field: "eventType", problem: "is not one of"},
		{name: "lower-case eventType", body: credentials(map[string]any{"eventType": "created"}), field: "eventType", problem: "is not one of"},
		{name: "eventType with spaces", body: credentials(map[string]any{"eventType": " CREATED "}), field: "eventType", problem: "is not one of"},
		{name: "unknown type (older field)", body: deactivation(map[string]any{"eventType": nil, "type": "PAUSE"}), field: "eventType", problem: "is not one of"},
		{name: "eventType as a number", body: credentials(map[string]any{"eventType": 1}), field: "eventType", problem: "must be a string"},

		{name: "missing tenantId", body: credentials(map[string]any{"tenantId": nil}), field: "tenantId", problem: "is missing"},
		{name: "missing tenantId (deactivation)", body: deactivation(map[string]any{"tenantId": nil}), field: "tenantId", problem: "is missing"},
		{name: "tenantId null", body: `{"eventType":"DELETION","tenantId":null}`, field: "tenantId", problem: "is missing"},
		{name: "tenantId empty", body: credentials(map[string]any{"tenantId": ""}), field: "tenantId", problem: "is empty"},
		{name: "tenantId whitespace", body: credentials(map[string]any{"tenantId": " \t\n"}), field: "tenantId", problem: "is empty"},
		{name: "tenantId as a number", body: `{"eventType":"CREATED","tenantId":12345,"clientId":"c","secret":"s","password":"p"}`, field: "tenantId", problem: "must be a string"},
		{name: "tenantId as an object", body: `{"eventType":"DELETION","tenantId":{"id":"12345"}}`, field: "tenantId", problem: "must be a string"},
		{name: "tenantId as an array", body: `{"eventType":"DELETION","tenantId":["12345"]}`, field: "tenantId", problem: "must be a string"},
		{name: "tenantId as a bool", body: `{"eventType":"DELETION","tenantId":true}`, field: "tenantId", problem: "must be a string"},
		{name: "tenantId ../x", body: credentials(map[string]any{"tenantId": "../x"}), field: "tenantId", problem: "must be 1 to 64"},
		{name: "tenantId with a slash", body: deactivation(map[string]any{"tenantId": "123/45"}), field: "tenantId", problem: "must be 1 to 64"},
		{name: "tenantId with a space inside", body: deactivation(map[string]any{"tenantId": "123 45"}), field: "tenantId", problem: "must be 1 to 64"},
		{name: "tenantId with markup", body: deactivation(map[string]any{"tenantId": "<script>"}), field: "tenantId", problem: "must be 1 to 64"},
		{name: "tenantId non-ASCII digits", body: deactivation(map[string]any{"tenantId": "١٢٣"}), field: "tenantId", problem: "must be 1 to 64"},
		{name: "tenantId of 65 characters", body: credentials(map[string]any{"tenantId": long("7", 65)}), field: "tenantId", problem: "longer than 64 bytes"},
		{name: "tenantId with a control character", body: credentials(map[string]any{"tenantId": "123\x0045"}), field: "tenantId", problem: "control characters"},

		{name: "missing clientId", body: credentials(map[string]any{"clientId": nil}), field: "clientId", problem: "is missing"},
		{name: "missing secret", body: credentials(map[string]any{"secret": nil}), field: "secret", problem: "is missing"},
		{name: "missing password", body: credentials(map[string]any{"password": nil}), field: "password", problem: "is missing"},
		{name: "RESET without password", body: credentials(map[string]any{"eventType": "RESET", "password": nil}), field: "password", problem: "is missing"},
		{name: "REACTIVATED without secret", body: credentials(map[string]any{"eventType": "REACTIVATED", "secret": nil}), field: "secret", problem: "is missing"},
		{name: "clientId empty", body: credentials(map[string]any{"clientId": ""}), field: "clientId", problem: "is empty"},
		{name: "secret whitespace", body: credentials(map[string]any{"secret": "   "}), field: "secret", problem: "is empty"},
		{name: "password whitespace", body: credentials(map[string]any{"password": "\t\r\n"}), field: "password", problem: "is empty"},
		{name: "secret null", body: `{"eventType":"CREATED","tenantId":"1","clientId":"c","secret":null,"password":"p"}`, field: "secret", problem: "is missing"},
		{name: "secret as a number", body: `{"eventType":"CREATED","tenantId":"1","clientId":"c","secret":987654321,"password":"p"}`, field: "secret", problem: "must be a string"},
		{name: "password as an object", body: `{"eventType":"CREATED","tenantId":"1","clientId":"c","secret":"s","password":{"value":"hunter22"}}`, field: "password", problem: "must be a string"},
		{name: "host as a number (info, still a string field)", body: `{"eventType":"CREATED","tenantId":"1","clientId":"c","secret":"s","password":"p","host":443}`, field: "host", problem: "must be a string"},
		{name: "reasonText as an array", body: `{"eventType":"DELETION","tenantId":"1","reasonText":["a"]}`, field: "reasonText", problem: "must be a string"},
		{name: "secret over 1024 bytes", body: credentials(map[string]any{"secret": long("s", 1025)}), field: "secret", problem: "longer than 1024 bytes"},
		{name: "password over 1024 bytes", body: credentials(map[string]any{"password": long("p", 1025)}), field: "password", problem: "longer than 1024 bytes"},
		{name: "secret of 1024 multi-byte runes", body: credentials(map[string]any{"secret": long("ß", 1024)}), field: "secret", problem: "longer than 1024 bytes"},
		{name: "clientId over 256 bytes", body: credentials(map[string]any{"clientId": long("c", 257)}), field: "clientId", problem: "longer than 256 bytes"},
		{name: "secret with a control character", body: credentials(map[string]any{"secret": "sec\x1bret"}), field: "secret", problem: "control characters"},
		{name: "password with DEL", body: credentials(map[string]any{"password": "pass\x7fword"}), field: "password", problem: "control characters"},
		{name: "clientId with a C1 control", body: credentials(map[string]any{"clientId": "client\u009bid"}), field: "clientId", problem: "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := webhook.Parse([]byte(tt.body))
			switch {
			case tt.notJSON:
				if !errors.Is(err, webhook.ErrNotJSON) {
					t.Fatalf("Parse = %+v, %v; want ErrNotJSON", ev, err)
				}
			case tt.field != "":
				var fe *webhook.FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("Parse = %+v, %v; want a *FieldError for %q", ev, err, tt.field)
				}
				if fe.Field != tt.field || !strings.Contains(err.Error(), tt.problem) || !strings.Contains(err.Error(), tt.field) {
					t.Fatalf("Parse error %q (field %q), want field %q, %q", err, fe.Field, tt.field, tt.problem)
				}
				if errors.Is(err, webhook.ErrNotJSON) || errors.Is(err, webhook.ErrSignature) {
					t.Fatalf("FieldError %v is also ErrNotJSON or ErrSignature", err)
				}
				checkNoValues(t, err.Error(), tt.body)
			default:
				if err != nil {
					t.Fatalf("Parse = %v", err)
				}
				if ev != tt.want {
					t.Fatalf("Parse =\n %#v\nwant\n %#v", ev, tt.want)
				}
				if ev.IsCredentials() != (ev.Type == webhook.Created || ev.Type == webhook.Reactivated || ev.Type == webhook.Reset) {
					t.Fatalf("IsCredentials() = %v for %s", ev.IsCredentials(), ev.Type)
				}
			}
			if err != nil && ev != (webhook.Event{}) {
				t.Fatalf("Parse returned %#v beside the error %v", ev, err)
			}
		})
	}
}

// checkNoValues fails when msg quotes a string value of body (other than the event type names,
// which a message may list as the allowed values).
func checkNoValues(t *testing.T, msg, body string) {
	t.Helper()
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) != nil {
		return
	}
	for k, v := range m {
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case float64:
			s = fmt.Sprint(v)
		case map[string]any, []any:
			b, _ := json.Marshal(v)
			s = string(b)
		default:
			continue
		}
		s = strings.TrimSpace(s)
		switch s {
		case "", webhook.Created, webhook.Reactivated, webhook.Reset, webhook.Deactivation, webhook.Deletion:
			continue
		}
		if len(s) >= 2 && strings.Contains(msg, s) {
			t.Fatalf("error %q quotes the value of %q", msg, k)
		}
	}
}

func TestFieldErrorMessage(t *testing.T) {
	t.Parallel()
	err := &webhook.FieldError{Field: "tenantId", Problem: "is missing"}
	if got, want := err.Error(), `field "tenantId" is missing`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestSignatureErrorIs(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("wrapped: %w", &webhook.SignatureError{Reason: "x"})
	if !errors.Is(err, webhook.ErrSignature) {
		t.Fatal("a wrapped SignatureError is not ErrSignature")
	}
	if errors.Is(err, webhook.ErrNotJSON) {
		t.Fatal("a SignatureError is ErrNotJSON")
	}
	if errors.Is(errors.New("webhook signature not valid"), webhook.ErrSignature) {
		t.Fatal("an unrelated error with the same text is ErrSignature")
	}
}

// The event's secret and password never show in its string forms or log lines.
func TestEventNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	ev, err := webhook.Parse([]byte(credentials(map[string]any{"secret": "S3CRET-value-xyz", "password": "PASSW0RD-value-xyz", "schoolName": "HTL"})))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	text := slog.New(slog.NewTextHandler(&logged, nil))
	jsonLog := slog.New(slog.NewJSONHandler(&logged, nil))
	text.Info("event", "ev", ev, "ptr", &ev)
	jsonLog.Info("event", "ev", ev, "ptr", &ev)
	jsonLog.Info("event", slog.Any("ev", ev), slog.Group("g", "ev", ev))
	forms := map[string]string{
		"String":            ev.String(),
		"LogValue":          ev.LogValue().String(),
		"LogValue resolved": ev.LogValue().Resolve().String(),
		"%v":                fmt.Sprintf("%v", ev),
		"%+v":               fmt.Sprintf("%+v", ev),
		//lint:ignore S1025 the %s verb itself is what is tested
		"%s":              fmt.Sprintf("%s", ev),
		"%q":              fmt.Sprintf("%q", ev),
		"%v pointer":      fmt.Sprintf("%v", &ev),
		"%+v pointer":     fmt.Sprintf("%+v", &ev),
		"%v slice":        fmt.Sprintf("%v", []webhook.Event{ev}),
		"%+v in a struct": fmt.Sprintf("%+v", struct{ E webhook.Event }{ev}),
		"Sprint":          fmt.Sprint(ev),
		"Sprintln":        fmt.Sprintln(ev),
		"error wrap":      fmt.Errorf("handling %v: %w", ev, errors.New("x")).Error(),
		"slog":            logged.String(),
	}
	for name, s := range forms {
		for _, secret := range []string{"S3CRET", "PASSW0RD"} {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows the %s: %s", name, strings.ToLower(secret), s)
			}
		}
	}
	if s := ev.String(); !strings.Contains(s, "CREATED") || !strings.Contains(s, "12345") {
		t.Errorf("String() = %q, want the type and the tenant", s)
	}
	if !strings.Contains(logged.String(), `"tenant_id":"12345"`) || !strings.Contains(logged.String(), "type=CREATED") {
		t.Errorf("log lines lack the type or the tenant: %s", logged.String())
	}
}

// %#v prints the struct's fields, the secret and password among them: Event has no GoString.
func TestEventGoSyntaxNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	ev := webhook.Event{Type: webhook.Created, TenantID: "1", ClientID: "c", Secret: "S3CRET", Password: "PASSW0RD"}
	js, _ := json.Marshal(ev)
	for name, s := range map[string]string{"%#v": fmt.Sprintf("%#v", ev), "%#v pointer": fmt.Sprintf("%#v", &ev), "json.Marshal": string(js)} {
		if strings.Contains(s, "S3CRET") || strings.Contains(s, "PASSW0RD") {
			t.Errorf("%s shows the secret: %s", name, s)
		}
	}
}

// Parse's guarantees, shared by the table and the fuzz targets: nil error ⇒ a known type, a valid
// tenant id, and for credentials events non-empty, bounded, trimmed credentials; every info field
// valid UTF-8 without control characters within its bound. An error is ErrNotJSON or a
// *FieldError naming a known field, and comes with a zero Event.
func checkParsed(t testing.TB, ev webhook.Event, err error) {
	t.Helper()
	if err != nil {
		if ev != (webhook.Event{}) {
			t.Fatalf("Parse returned %#v beside the error %v", ev, err)
		}
		var fe *webhook.FieldError
		switch {
		case errors.Is(err, webhook.ErrNotJSON):
		case errors.As(err, &fe):
			if !knownFields[fe.Field] || fe.Problem == "" {
				t.Fatalf("FieldError %q: unknown field or no problem", err)
			}
		default:
			t.Fatalf("Parse error %v (%T) is neither ErrNotJSON nor a *FieldError", err, err)
		}
		return
	}
	switch ev.Type {
	case webhook.Created, webhook.Reactivated, webhook.Reset, webhook.Deactivation, webhook.Deletion:
	default:
		t.Fatalf("Parse accepted event type %q", ev.Type)
	}
	if !store.ValidTenantID(ev.TenantID) {
		t.Fatalf("Parse accepted tenant id %q", ev.TenantID)
	}
	bounded := func(name, s string, max int, required bool) {
		t.Helper()
		if required && s == "" {
			t.Fatalf("%s event with empty %s", ev.Type, name)
		}
		if len(s) > max || !utf8.ValidString(s) || strings.TrimSpace(s) != s && required {
			t.Fatalf("%s %q: over %d bytes, invalid UTF-8 or untrimmed", name, s, max)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
				t.Fatalf("%s %q holds control character %U", name, s, r)
			}
		}
	}
	if ev.IsCredentials() {
		bounded("clientId", ev.ClientID, 256, true)
		bounded("secret", ev.Secret, 1024, true)
		bounded("password", ev.Password, 1024, true)
		if ev.ReasonType != "" || ev.ReasonText != "" {
			t.Fatalf("credentials event with a reason: %#v", ev)
		}
	} else if ev.ClientID != "" || ev.Secret != "" || ev.Password != "" || ev.Info != (webhook.Info{}) {
		t.Fatalf("%s event with credentials or info", ev.Type)
	}
	// An informational field is shown to operators: no format character (Unicode category Cf:
	// bidirectional overrides, zero-width characters) and no line separator.
	shownAsIs := func(name, s string) {
		t.Helper()
		for _, r := range s {
			if unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
				t.Fatalf("%s %q holds format character %U", name, s, r)
			}
		}
	}
	i := ev.Info
	for name, s := range map[string]string{"host": i.Host, "country": i.Country, "region": i.Region, "language": i.Language,
		"activatorEmail": i.ActivatorEmail, "activatorUsername": i.ActivatorUsername, "schoolEmail": i.SchoolEmail,
		"schoolPhone": i.SchoolPhone, "schoolName": i.SchoolName, "reasonType": ev.ReasonType} {
		bounded(name, s, 256, false)
		shownAsIs(name, s)
	}
	bounded("reasonText", ev.ReasonText, 1024, false)
	shownAsIs("reasonText", ev.ReasonText)
}

var knownFields = map[string]bool{
	"eventType": true, "type": true, "tenantId": true, "clientId": true, "secret": true, "password": true,
	"host": true, "country": true, "region": true, "language": true, "activatorEmail": true,
	"activatorUsername": true, "schoolEmail": true, "schoolPhoneNumber": true, "schoolName": true,
	"reasonType": true, "reasonText": true,
}

// A signed body goes through Verify and Parse as the handler does.
func TestVerifyThenParse(t *testing.T) {
	t.Parallel()
	k := keys()
	v := webhook.NewVerifier(pubs(k.old, k.platform))
	for _, body := range []string{createdBody, deactivationBody} {
		if err := v.Verify(webhook.Algorithm, sign(t, k.platform, []byte(body)), []byte(body)); err != nil {
			t.Fatal(err)
		}
		ev, err := webhook.Parse([]byte(body))
		checkParsed(t, ev, err)
		if err != nil {
			t.Fatal(err)
		}
	}
}
