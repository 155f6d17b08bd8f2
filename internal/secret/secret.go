// Package secret seals secrets at rest (tenant credentials and the like)
// with AES-256-GCM under a keyring that supports key rotation.
//
// A sealed value is self-describing:
//
//	version (1 byte, = 1) | key id length (1 byte) | key id | nonce (12 bytes) | ciphertext+tag
//
// The key id lets a ring with several keys open values sealed before a
// rotation; the first key in the ring is the active one and seals every new
// value. The additional data binds a value to where it is stored (tenant id
// and column), so a ciphertext copied into another tenant's row or another
// column does not open.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Sentinel errors, for errors.Is. Errors returned by this package never
// contain plaintext or key bytes.
var (
	// ErrUnknownKey means the value was sealed under a key id that is not in
	// the ring (for example a key that was removed before its values were
	// resealed).
	ErrUnknownKey = errors.New("unknown encryption key")
	// ErrMalformed means the value does not have the sealed-value format.
	ErrMalformed = errors.New("malformed sealed value")
	// ErrOpen means authentication failed: the value was tampered with, or
	// it is opened with a tenant id or column other than the one it was
	// sealed for.
	ErrOpen = errors.New("cannot open sealed value")
)

const (
	version = 1
	// KeySize is the length of a key secret: AES-256.
	KeySize = 32
	// maxIDLen bounds key ids. It is also what keeps key material out of
	// error messages: a base64-encoded 32-byte key is at least 43 characters,
	// so a key pasted where an id belongs can never pass validation and be
	// echoed back as an id.
	maxIDLen  = 32
	nonceSize = 12
	tagSize   = 16
)

// Key is one entry of a keyring.
type Key struct {
	ID     string
	Secret []byte // KeySize bytes
}

// Keyring holds the keys for sealing and opening secrets. It is immutable
// after construction and safe for concurrent use. It keeps only the
// initialised ciphers, never a copy of the key bytes.
type Keyring struct {
	active *entry
	byID   map[string]*entry
	ids    []string // in configuration order; ids[0] is the active key
}

type entry struct {
	id   string
	aead cipher.AEAD
}

// ParseKeyring parses the ENCRYPTION_KEYS format: comma-separated
// "id:base64(32 bytes)" entries, the first of which is the active key.
// Standard and URL-safe base64 are accepted, with or without padding.
// Errors name the entry and the problem but never echo key material.
func ParseKeyring(spec string) (*Keyring, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("secret: parse keyring: empty key spec")
	}
	entries := strings.Split(spec, ",")
	keys := make([]Key, 0, len(entries))
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("secret: parse keyring: entry %d is empty", i+1)
		}
		id, enc, ok := strings.Cut(e, ":")
		if !ok {
			return nil, fmt.Errorf("secret: parse keyring: entry %d: missing ':' between key id and key", i+1)
		}
		id, enc = strings.TrimSpace(id), strings.TrimSpace(enc)
		if err := validateID(id); err != nil {
			return nil, fmt.Errorf("secret: parse keyring: entry %d: %w", i+1, err)
		}
		b, err := decodeBase64(enc)
		if err != nil {
			return nil, fmt.Errorf("secret: parse keyring: key %q: key is not valid base64", id)
		}
		keys = append(keys, Key{ID: id, Secret: b})
	}
	kr, err := newKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("secret: parse keyring: %w", err)
	}
	return kr, nil
}

// decodeBase64 accepts the encodings people produce with common tools
// (openssl rand -base64, Go's URL encoding, trimmed padding). The decoder's
// own error is dropped: it carries nothing useful and we want no path by
// which input text reaches a log.
func decodeBase64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	encs := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}
	for _, enc := range encs {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("invalid base64")
}

// NewKeyring builds a keyring from keys; keys[0] becomes the active key.
// The secrets are not retained: only the ciphers built from them are.
func NewKeyring(keys ...Key) (*Keyring, error) {
	kr, err := newKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("secret: new keyring: %w", err)
	}
	return kr, nil
}

func newKeyring(keys []Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	kr := &Keyring{byID: make(map[string]*entry, len(keys)), ids: make([]string, 0, len(keys))}
	for _, k := range keys {
		if err := validateID(k.ID); err != nil {
			return nil, err
		}
		if _, dup := kr.byID[k.ID]; dup {
			return nil, fmt.Errorf("duplicate key id %q", k.ID)
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("key %q: key is %d bytes, want %d", k.ID, len(k.Secret), KeySize)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		// NewGCMWithRandomNonce draws the 96-bit nonce from crypto/rand and
		// prepends it to the ciphertext, so we cannot get nonce handling
		// wrong. Random nonces are safe for about 2^32 seals per key, far
		// beyond the number of secrets we store between rotations.
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		e := &entry{id: k.ID, aead: aead}
		kr.byID[k.ID] = e
		kr.ids = append(kr.ids, k.ID)
	}
	kr.active = kr.byID[kr.ids[0]]
	return kr, nil
}

// validateID checks a key id without echoing it when it is invalid: an
// invalid id might be a key pasted into the wrong place.
func validateID(id string) error {
	if id == "" {
		return errors.New("empty key id")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("key id longer than %d characters", maxIDLen)
	}
	if !validIDBytes(id) {
		return errors.New("key id has characters other than A-Z, a-z, 0-9, '_' and '-'")
	}
	return nil
}

func validIDBytes[S string | []byte](id S) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// GenerateKeySpec returns a fresh "id:base64" keyring entry with a random
// key, for bootstrapping a local setup. The id carries the date for humans
// and a random suffix so that two keys made on the same day differ.
func GenerateKeySpec() (string, error) {
	var secret [KeySize]byte
	var suffix [3]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("secret: generate key: %w", err)
	}
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", fmt.Errorf("secret: generate key id: %w", err)
	}
	id := "k" + time.Now().UTC().Format("20060102") + "-" + hex.EncodeToString(suffix[:])
	return id + ":" + base64.StdEncoding.EncodeToString(secret[:]), nil
}

// ActiveID returns the id of the key that seals new values.
func (k *Keyring) ActiveID() string { return k.active.id }

// IDs returns all key ids, active first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// String describes the ring by key ids only.
func (k *Keyring) String() string {
	return "keyring[active=" + k.active.id + " ids=" + strings.Join(k.ids, ",") + "]"
}

// LogValue implements slog.LogValuer so that logging a keyring shows ids only.
func (k *Keyring) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("active", k.active.id),
		slog.String("ids", strings.Join(k.ids, ",")),
	)
}

// Seal encrypts plaintext under the active key, bound to tenantID and column.
func (k *Keyring) Seal(plaintext []byte, tenantID, column string) ([]byte, error) {
	e := k.active
	hdr := 2 + len(e.id)
	n := hdr + nonceSize + len(plaintext) + tagSize
	buf, ad := allocWithAD(n, e.id, tenantID, column)
	out := buf[:hdr]
	out[0] = version
	out[1] = byte(len(e.id))
	copy(out[2:], e.id)
	return e.aead.Seal(out, nil, plaintext, ad), nil
}

// Open decrypts a value sealed by Seal with the same tenantID and column,
// under any key in the ring.
func (k *Keyring) Open(sealed []byte, tenantID, column string) ([]byte, error) {
	e, hdr, err := k.lookup(sealed)
	if err != nil {
		return nil, err
	}
	ct := sealed[hdr:]
	buf, ad := allocWithAD(len(ct)-nonceSize-tagSize, e.id, tenantID, column)
	pt, err := e.aead.Open(buf, nil, ct, ad)
	if err != nil {
		// The cipher's error says nothing more than "authentication failed";
		// replace it so no library text ends up next to secrets in logs.
		return nil, fmt.Errorf("secret: open value sealed under key %q: %w", e.id, ErrOpen)
	}
	return pt, nil
}

// NeedsRotation reports whether sealed was sealed under a key other than
// the active one. It does not authenticate the value.
func (k *Keyring) NeedsRotation(sealed []byte) (bool, error) {
	id, _, err := parseHeader(sealed)
	if err != nil {
		return false, err
	}
	return string(id) != k.active.id, nil
}

// Reseal opens sealed and seals the plaintext again under the active key.
// Values already under the active key are resealed too (with a fresh
// nonce); callers that want to skip them check NeedsRotation first.
func (k *Keyring) Reseal(sealed []byte, tenantID, column string) ([]byte, error) {
	pt, err := k.Open(sealed, tenantID, column)
	if err != nil {
		return nil, err
	}
	out, err := k.Seal(pt, tenantID, column)
	clear(pt) // do not leave the plaintext lying around longer than needed
	return out, err
}

// KeyID returns the id of the key a value was sealed under, without
// authenticating the value.
func KeyID(sealed []byte) (string, error) {
	id, _, err := parseHeader(sealed)
	if err != nil {
		return "", err
	}
	return string(id), nil
}

func (k *Keyring) lookup(sealed []byte) (*entry, int, error) {
	id, hdr, err := parseHeader(sealed)
	if err != nil {
		return nil, 0, err
	}
	e, ok := k.byID[string(id)] // no allocation: the compiler specialises map[string(b)]
	if !ok {
		return nil, 0, fmt.Errorf("secret: key %q: %w", id, ErrUnknownKey)
	}
	return e, hdr, nil
}

// parseHeader returns the key id and the header length. The id is checked
// against the id alphabet so that error messages quoting it stay tidy.
func parseHeader(sealed []byte) (id []byte, hdr int, err error) {
	if len(sealed) < 2 {
		return nil, 0, fmt.Errorf("secret: %d bytes, too short: %w", len(sealed), ErrMalformed)
	}
	if sealed[0] != version {
		return nil, 0, fmt.Errorf("secret: version %d not supported: %w", sealed[0], ErrMalformed)
	}
	n := int(sealed[1])
	if n == 0 || n > maxIDLen {
		return nil, 0, fmt.Errorf("secret: key id length %d: %w", n, ErrMalformed)
	}
	hdr = 2 + n
	if len(sealed) < hdr+nonceSize+tagSize {
		return nil, 0, fmt.Errorf("secret: %d bytes, too short: %w", len(sealed), ErrMalformed)
	}
	id = sealed[2:hdr]
	if !validIDBytes(id) {
		return nil, 0, fmt.Errorf("secret: invalid key id: %w", ErrMalformed)
	}
	return id, hdr, nil
}

// allocWithAD returns an empty buffer with capacity n for the cipher's
// output, and the additional data for a value under keyID at
// (tenantID, column).
//
// Both live in one allocation, the additional data in the tail beyond the
// buffer's capacity, so the two never overlap (as cipher.AEAD requires) and
// an append cannot overwrite the additional data. A stack buffer would not
// save the allocation: anything passed through the cipher.AEAD interface
// escapes to the heap.
func allocWithAD(n int, keyID, tenantID, column string) (buf, ad []byte) {
	b := make([]byte, n+adLen(keyID, tenantID, column))
	return b[:0:n], appendAD(b[n:n], keyID, tenantID, column)
}

func adLen(keyID, tenantID, column string) int {
	return 2 + len(keyID) + 4 + len(tenantID) + 4 + len(column)
}

// appendAD appends the authenticated context of a value: the header
// (version and key id, so that a future format cannot be confused with this
// one), then tenantID and column, each with a 4-byte length prefix so that
// ("ab", "c") and ("a", "bc") differ.
func appendAD(dst []byte, keyID, tenantID, column string) []byte {
	dst = append(dst, version, byte(len(keyID)))
	dst = append(dst, keyID...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(tenantID)))
	dst = append(dst, tenantID...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(column)))
	dst = append(dst, column...)
	return dst
}
