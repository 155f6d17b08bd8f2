package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Standard Webhooks (https://www.standardwebhooks.com): every request carries
//
//	webhook-id:        the event's message id, the same on every attempt (receivers dedupe on it)
//	webhook-timestamp: the attempt's time, in seconds since the epoch (receivers refuse old ones)
//	webhook-signature: "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)),
//	                   one per secret, separated by spaces (several during a secret rotation)
//
// so any Standard Webhooks library verifies it with the same whsec_ secret.

// Header names of Standard Webhooks.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every Standard Webhooks secret.
const SecretPrefix = "whsec_"

// Secret sizes the specification allows (bytes of key after base64).
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// Secret is one signing key. Its String, GoString and LogValue never show the key.
type Secret struct{ key []byte }

func (Secret) String() string         { return SecretPrefix + "(hidden)" }
func (s Secret) GoString() string     { return s.String() }
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
func (s Secret) equal(o Secret) bool  { return hmac.Equal(s.key, o.key) }
func (s Secret) sign(msg []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(msg)
	return m.Sum(nil)
}

// ParseSecrets reads EVENTS_SECRET: one or more "whsec_" + base64 secrets of 24 to 64 bytes,
// separated by spaces or commas. Every one signs each request; list the new one first during a
// rotation, and drop the old one once the app verifies with the new one.
func ParseSecrets(v string) ([]Secret, error) {
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	if len(fields) == 0 {
		return nil, errors.New("no secret given")
	}
	var out []Secret
	for i, f := range fields {
		b64, ok := strings.CutPrefix(f, SecretPrefix)
		if !ok {
			return nil, fmt.Errorf("secret %d does not start with %s (make one with: echo %s$(head -c 32 /dev/urandom | base64))", i+1, SecretPrefix, SecretPrefix)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("secret %d is not %s followed by standard base64", i+1, SecretPrefix)
		}
		if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
			return nil, fmt.Errorf("secret %d has %d bytes; Standard Webhooks secrets have %d to %d", i+1, len(key), MinSecretBytes, MaxSecretBytes)
		}
		s := Secret{key: key}
		for _, o := range out {
			if o.equal(s) {
				return nil, fmt.Errorf("secret %d is given twice", i+1)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Sign returns the webhook-signature header of one attempt: a "v1," signature per secret,
// separated by spaces.
func Sign(secrets []Secret, msgID string, timestamp int64, body []byte) string {
	msg := make([]byte, 0, len(msgID)+len(body)+24)
	msg = append(msg, msgID...)
	msg = append(msg, '.')
	msg = strconv.AppendInt(msg, timestamp, 10)
	msg = append(msg, '.')
	msg = append(msg, body...)
	var b strings.Builder
	for i, s := range secrets {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(s.sign(msg)))
	}
	return b.String()
}
