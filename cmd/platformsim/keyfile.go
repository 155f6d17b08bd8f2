package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/untis-partner/server/internal/platformsim"
)

// loadOrCreateKey reads a PKCS#8 PEM private key from path. When the file
// does not exist it generates a key for alg and writes it (0600), so a
// restarted simulator keeps its keys and the server's configuration stays
// valid.
func loadOrCreateKey(path, alg string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseKey(path, b, alg)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read key: %w", err)
	}

	key, err := platformsim.GenerateSigningKey(alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	// O_EXCL: if another process created the file meanwhile, use theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateKey(path, alg)
	}
	if err != nil {
		return nil, fmt.Errorf("create key file: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write key file: %w", err)
	}
	return key, nil
}

func parseKey(path string, b []byte, alg string) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PRIVATE KEY\" (PKCS#8) block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: parse PKCS#8 key: %w", path, err)
	}
	switch key := k.(type) {
	case *rsa.PrivateKey:
		if alg != platformsim.RS256 {
			return nil, fmt.Errorf("%s holds an RSA key, but the algorithm is %s", path, alg)
		}
		return key, nil
	case *ecdsa.PrivateKey:
		if alg != platformsim.ES256 {
			return nil, fmt.Errorf("%s holds an EC key, but the algorithm is %s", path, alg)
		}
		return key, nil
	}
	return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
}
