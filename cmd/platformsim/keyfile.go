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
// valid. The file appears complete or not at all: two processes starting
// at once both end up with the key of whichever linked its file first.
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
	switch err := writeNewFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); {
	case errors.Is(err, fs.ErrExist):
		// Another process won the race; its file is complete, use it.
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read key: %w", err)
		}
		return parseKey(path, b, alg)
	case err != nil:
		return nil, fmt.Errorf("write key file: %w", err)
	}
	return key, nil
}

// writeNewFile creates path with data, atomically: the data goes to a
// temporary file (0600) in the same directory, is synced, and is then
// hard-linked to path, which fails with fs.ErrExist if path exists. A
// reader never sees a half-written file.
func writeNewFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if rmErr := os.Remove(tmp); rmErr != nil && err == nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = rmErr
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	// Make the new name durable too; failing to is not worth an error.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
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
