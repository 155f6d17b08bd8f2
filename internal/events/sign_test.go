package events_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/untis-partner/server/internal/events"
)

// The published test vector of the Standard Webhooks reference libraries (their test suites all
// use it): a signature made here must be byte for byte theirs.
func TestSignMatchesThePublishedTestVector(t *testing.T) {
	t.Parallel()
	secrets, err := events.ParseSecrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := events.Sign(secrets, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %q, want the published %q", got, want)
	}
}

// whsec makes a secret of n bytes.
func whsec(n int, fill byte) string {
	return events.SecretPrefix + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{fill}, n))
}

// The Standard Webhooks Go library verifies what we sign, with either secret of a rotation, and
// refuses a changed body, another id, another timestamp and another secret.
func TestSignatureVerifiesWithTheStandardWebhooksLibrary(t *testing.T) {
	t.Parallel()
	newKey, oldKey, otherKey := whsec(32, 1), whsec(24, 2), whsec(64, 3)
	secrets, err := events.ParseSecrets(newKey + " " + oldKey)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"school.deleted","timestamp":"2025-01-02T03:04:05.000000Z","data":{"tenantId":"1001","message":"Lösche die Daten"}}`)
	ts := time.Now()
	header := func(id string, ts time.Time, sig string) http.Header {
		h := http.Header{}
		h.Set(events.HeaderID, id)
		h.Set(events.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(events.HeaderSignature, sig)
		return h
	}
	sig := events.Sign(secrets, "msg_1", ts.Unix(), body)
	if parts := strings.Split(sig, " "); len(parts) != 2 || !strings.HasPrefix(parts[0], "v1,") || !strings.HasPrefix(parts[1], "v1,") {
		t.Fatalf("signature header %q, want two v1 signatures", sig)
	}
	verify := func(secret string, payload []byte, h http.Header) error {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		return wh.Verify(payload, h)
	}
	for _, key := range []string{newKey, oldKey} {
		if err := verify(key, body, header("msg_1", ts, sig)); err != nil {
			t.Errorf("library refuses our signature: %v", err)
		}
	}
	changed := bytes.Replace(body, []byte("1001"), []byte("1002"), 1)
	for name, err := range map[string]error{
		"changed body":     verify(newKey, changed, header("msg_1", ts, sig)),
		"other id":         verify(newKey, body, header("msg_2", ts, sig)),
		"other timestamp":  verify(newKey, body, header("msg_1", ts.Add(time.Second), sig)),
		"other secret":     verify(otherKey, body, header("msg_1", ts, sig)),
		"an old timestamp": verify(newKey, body, header("msg_1", ts.Add(-time.Hour), events.Sign(secrets, "msg_1", ts.Add(-time.Hour).Unix(), body))),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestParseSecrets(t *testing.T) {
	t.Parallel()
	good := whsec(32, 'a')
	for _, tc := range []struct {
		name, in string
		n        int
		wantErr  string
	}{
		{"one", good, 1, ""},
		{"the smallest", whsec(24, 1), 1, ""},
		{"the largest", whsec(64, 1), 1, ""},
		{"two by space", good + " " + whsec(24, 1), 2, ""},
		{"two by comma and newline", good + ",\n" + whsec(24, 1), 2, ""},
		{"empty", "  ", 0, "no secret"},
		{"no prefix", strings.TrimPrefix(good, events.SecretPrefix), 0, "does not start with whsec_"},
		{"not base64", "whsec_not*base64", 0, "base64"},
		{"URL-safe base64", "whsec_" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), 0, "base64"},
		{"too short", whsec(23, 1), 0, "23 bytes"},
		{"too long", whsec(65, 1), 0, "65 bytes"},
		{"twice", good + " " + good, 0, "given twice"},
		{"the second is bad", good + " whsec_", 0, "secret 2 has 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := events.ParseSecrets(tc.in)
			if tc.wantErr == "" {
				if err != nil || len(got) != tc.n {
					t.Fatalf("ParseSecrets = %d secrets, %v", len(got), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if b64 := strings.TrimPrefix(good, events.SecretPrefix); strings.Contains(err.Error(), b64) {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
}

// A secret printed or logged by accident shows nothing of its key.
func TestSecretNeverPrintsItsKey(t *testing.T) {
	t.Parallel()
	raw := whsec(32, 'k')
	secrets, err := events.ParseSecrets(raw)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "secret", secrets[0], "secrets", secrets)
	key := strings.TrimPrefix(raw, events.SecretPrefix)
	for _, s := range []string{fmt.Sprint(secrets), fmt.Sprintf("%v %+v %#v %s", secrets[0], secrets[0], secrets[0], secrets[0]), logged.String()} {
		if strings.Contains(s, key) || strings.Contains(s, "107 107") || strings.Contains(s, "kkkk") {
			t.Errorf("printed: %s", s)
		}
	}
}
