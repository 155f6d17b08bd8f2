package platformsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
)

// Algorithms the simulator signs id_tokens with.
const (
	RS256 = "RS256"
	ES256 = "ES256"
)

// Generating a 2048-bit RSA key takes tens to hundreds of milliseconds, so
// the default keys are made once per process and shared by every simulator
// that was not given its own. Rotation always makes a fresh key.
var (
	defaultKeysOnce sync.Once
	defaultWebhook  *rsa.PrivateKey
	defaultSigning  *rsa.PrivateKey
	defaultKeysErr  error

	foreignMu   sync.Mutex
	foreignKeys = map[string]*signingKey{}
)

func loadDefaultKeys() {
	if defaultWebhook, defaultKeysErr = rsa.GenerateKey(rand.Reader, 2048); defaultKeysErr != nil {
		defaultKeysErr = fmt.Errorf("platformsim: generate webhook key: %w", defaultKeysErr)
		return
	}
	if defaultSigning, defaultKeysErr = rsa.GenerateKey(rand.Reader, 2048); defaultKeysErr != nil {
		defaultKeysErr = fmt.Errorf("platformsim: generate signing key: %w", defaultKeysErr)
	}
}

func defaultWebhookKey() (*rsa.PrivateKey, error) {
	defaultKeysOnce.Do(loadDefaultKeys)
	return defaultWebhook, defaultKeysErr
}

func defaultSigningKey() (crypto.Signer, error) {
	defaultKeysOnce.Do(loadDefaultKeys)
	return defaultSigning, defaultKeysErr
}

// GenerateSigningKey makes a new id_token signing key for alg (RS256 or ES256).
func GenerateSigningKey(alg string) (crypto.Signer, error) {
	switch alg {
	case RS256:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("platformsim: generate RSA key: %w", err)
		}
		return k, nil
	case ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("platformsim: generate EC key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("platformsim: unsupported signing algorithm %q (want RS256 or ES256)", alg)
	}
}

// foreignKey returns a key of the given algorithm that no simulator
// publishes, for the ForeignKey fault. It is cached per process because a
// fresh RSA key would make that fault slow.
func foreignKey(alg string) (*signingKey, error) {
	foreignMu.Lock()
	defer foreignMu.Unlock()
	if k := foreignKeys[alg]; k != nil {
		return k, nil
	}
	signer, err := GenerateSigningKey(alg)
	if err != nil {
		return nil, err
	}
	k, err := newSigningKey(signer)
	if err != nil {
		return nil, err
	}
	foreignKeys[alg] = k
	return k, nil
}

// signingKey is one id_token key with everything derived from it that the
// hot path needs, computed once.
type signingKey struct {
	kid    string
	alg    string
	signer crypto.Signer
	ec     *ecdsa.PrivateKey // set for ES256, whose JWS signature is r||s, not ASN.1
	pub    crypto.PublicKey
	jwk    jwk
	// pubPEM is the PKIX PEM of the public key: the HMAC secret of the
	// classic RS256→HS256 key-confusion attack.
	pubPEM []byte
	// header is the base64url JWS header {"alg","kid","typ"}, reused for
	// every token signed with this key.
	header string
}

type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

func newSigningKey(signer crypto.Signer) (*signingKey, error) {
	k := &signingKey{signer: signer, pub: signer.Public()}
	b64 := base64.RawURLEncoding
	var thumb string
	switch priv := signer.(type) {
	case *rsa.PrivateKey:
		if priv.N.BitLen() < 2048 {
			return nil, errors.New("platformsim: RSA signing key shorter than 2048 bits")
		}
		k.alg = RS256
		k.jwk = jwk{Kty: "RSA", N: b64.EncodeToString(priv.N.Bytes()), E: b64.EncodeToString(bigEndian(priv.E))}
		// RFC 7638 thumbprint input: required members in lexicographic order.
		thumb = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, k.jwk.E, k.jwk.N)
	case *ecdsa.PrivateKey:
		if priv.Curve != elliptic.P256() {
			return nil, errors.New("platformsim: ECDSA signing key must use P-256 (ES256)")
		}
		pubBytes, err := priv.PublicKey.Bytes() // uncompressed point 0x04||X||Y
		if err != nil {
			return nil, fmt.Errorf("platformsim: encode EC public key: %w", err)
		}
		k.alg = ES256
		k.ec = priv
		k.jwk = jwk{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(pubBytes[1:33]), Y: b64.EncodeToString(pubBytes[33:])}
		thumb = fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, k.jwk.X, k.jwk.Y)
	default:
		return nil, fmt.Errorf("platformsim: unsupported signing key type %T (want *rsa.PrivateKey or P-256 *ecdsa.PrivateKey)", signer)
	}
	sum := sha256.Sum256([]byte(thumb))
	k.kid = b64.EncodeToString(sum[:])
	k.jwk.Kid, k.jwk.Alg, k.jwk.Use = k.kid, k.alg, "sig"

	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		return nil, fmt.Errorf("platformsim: marshal public key: %w", err)
	}
	k.pubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hdr, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{k.alg, k.kid, "JWT"})
	k.header = b64.EncodeToString(hdr)
	return k, nil
}

func bigEndian(e int) []byte {
	var b []byte
	for ; e > 0; e >>= 8 {
		b = append([]byte{byte(e)}, b...)
	}
	return b
}

// keySet is the immutable set of published signing keys; rotation swaps in
// a new set atomically, so signing and JWKS reads never take a lock.
type keySet struct {
	current   *signingKey
	published []*signingKey // current first
	byKid     map[string]*signingKey
	jwks      []byte // the JWKS document, marshalled once
}

func newKeySet(current *signingKey, old []*signingKey) *keySet {
	ks := &keySet{current: current, byKid: make(map[string]*signingKey)}
	ks.published = append([]*signingKey{current}, old...)
	doc := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, k := range ks.published {
		if _, dup := ks.byKid[k.kid]; dup {
			continue
		}
		ks.byKid[k.kid] = k
		doc.Keys = append(doc.Keys, k.jwk)
	}
	ks.jwks, _ = json.Marshal(doc)
	return ks
}

// RotateSigningKey replaces the id_token signing key with a new one of the
// same algorithm and a new kid. With keepOld the previous keys stay in the
// JWKS (a graceful rotation); without, tokens signed by them no longer
// verify. It returns the new kid.
func (s *Sim) RotateSigningKey(keepOld bool) (string, error) {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	old := s.keys.Load()
	signer, err := GenerateSigningKey(old.current.alg)
	if err != nil {
		return "", err
	}
	k, err := newSigningKey(signer)
	if err != nil {
		return "", err
	}
	var keep []*signingKey
	if keepOld {
		keep = old.published
	}
	s.keys.Store(newKeySet(k, keep))
	s.log.Info("platformsim: signing key rotated", "kid", k.kid, "alg", k.alg, "kept_old", keepOld)
	return k.kid, nil
}

// SigningKeyID returns the kid of the current id_token signing key.
func (s *Sim) SigningKeyID() string { return s.keys.Load().current.kid }

// SigningAlgorithm returns the current id_token signing algorithm.
func (s *Sim) SigningAlgorithm() string { return s.keys.Load().current.alg }

// JWKS returns the current JWK set document.
func (s *Sim) JWKS() []byte { return s.keys.Load().jwks }

// WebhookPublicKey returns the webhook signing key's public half as base64
// DER X.509 SubjectPublicKeyInfo without PEM armour: exactly the form of the
// partner server's UNTIS_WEBHOOK_KEYS.
func (s *Sim) WebhookPublicKey() string { return s.webhookPubB64 }

// PublicKeyBase64 encodes a public key as base64 DER SubjectPublicKeyInfo,
// the form of UNTIS_WEBHOOK_KEYS.
func PublicKeyBase64(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("platformsim: marshal webhook public key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(der), nil
}
