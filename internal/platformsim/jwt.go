package platformsim

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// idClaims are the claims of a simulated id_token. Sub and Aud are
// omitempty so the MissingSub and MissingAudience faults can drop them.
type idClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub,omitempty"`
	Aud      string `json:"aud,omitempty"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	AuthTime int64  `json:"auth_time,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	// Jti identifies the token, so the simulator can revoke it when it
	// comes back as a bearer token.
	Jti string `json:"jti,omitempty"`
}

// signIDToken builds and signs an id_token, applying fault f. It runs
// without any lock held: signing is the expensive part of a login.
func (s *Sim) signIDToken(c idClaims, f IDTokenFault) (string, error) {
	key := s.keys.Load().current
	switch f {
	case WrongNonce:
		c.Nonce = "wrong-" + randomToken(9)
	case WrongIssuer:
		// A token from another school of the same platform: the
		// cross-tenant confusion a partner must catch.
		c.Iss += "0"
	case WrongAudience:
		c.Aud = "another-partner-app"
	case MissingAudience:
		c.Aud = ""
	case MissingSub:
		c.Sub = ""
	case Expired:
		c.Iat -= int64(2 * IDTokenLifetime / time.Second)
		c.Exp = c.Iat + int64(IDTokenLifetime/time.Second)
		c.AuthTime = c.Iat
	case ForeignKey:
		fk, err := foreignKey(key.alg)
		if err != nil {
			return "", err
		}
		key = fk
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("platformsim: marshal id_token claims: %w", err)
	}
	b64 := base64.RawURLEncoding

	switch f {
	case AlgNone:
		hdr := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		return hdr + "." + b64.EncodeToString(payload) + ".", nil
	case HS256WithPublicKey:
		hdr, _ := json.Marshal(map[string]string{"alg": "HS256", "kid": key.kid, "typ": "JWT"})
		signingInput := b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
		mac := hmac.New(sha256.New, key.pubPEM)
		mac.Write([]byte(signingInput))
		return signingInput + "." + b64.EncodeToString(mac.Sum(nil)), nil
	}

	buf := make([]byte, 0, len(key.header)+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(512))
	buf = append(buf, key.header...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, payload)
	sig, err := key.sign(buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// sign returns the JWS signature of signingInput.
func (k *signingKey) sign(signingInput []byte) ([]byte, error) {
	digest := sha256.Sum256(signingInput)
	if k.ec != nil {
		r, s, err := ecdsa.Sign(rand.Reader, k.ec, digest[:])
		if err != nil {
			return nil, fmt.Errorf("platformsim: sign id_token: %w", err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	}
	sig, err := k.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("platformsim: sign id_token: %w", err)
	}
	return sig, nil
}

// verifyIDToken checks a JWT presented as a bearer token (some partners
// send the id_token to OneRoster) and returns its claims. Only tokens
// signed by a currently published key are accepted.
func (s *Sim) verifyIDToken(raw string) (idClaims, error) {
	var c idClaims
	h, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return c, errors.New("malformed token")
	}
	p, sigB64, ok := strings.Cut(rest, ".")
	if !ok {
		return c, errors.New("malformed token")
	}
	b64 := base64.RawURLEncoding
	hdrJSON, err := b64.DecodeString(h)
	if err != nil {
		return c, errors.New("malformed token header")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		return c, errors.New("malformed token header")
	}
	key := s.keys.Load().byKid[hdr.Kid]
	if key == nil || hdr.Alg != key.alg {
		return c, errors.New("token not signed by a published key")
	}
	sig, err := b64.DecodeString(sigB64)
	if err != nil {
		return c, errors.New("malformed token signature")
	}
	digest := sha256.Sum256([]byte(raw[:len(h)+1+len(p)]))
	switch pub := key.pub.(type) {
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
			return c, errors.New("bad token signature")
		}
	case *ecdsa.PublicKey:
		if len(sig) != 64 || !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return c, errors.New("bad token signature")
		}
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return c, errors.New("malformed token payload")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&c); err != nil {
		return c, errors.New("malformed token payload")
	}
	if s.Now().Unix() >= c.Exp {
		return c, errors.New("token expired")
	}
	return c, nil
}
