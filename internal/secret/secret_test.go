package secret

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// testKey returns a deterministic key; seed makes keys differ.
func testKey(id string, seed byte) Key {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return Key{ID: id, Secret: b}
}

func mustKeyring(t testing.TB, keys ...Key) *Keyring {
	t.Helper()
	kr, err := NewKeyring(keys...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func mustSeal(t testing.TB, kr *Keyring, pt []byte, tenant, column string) []byte {
	t.Helper()
	sealed, err := kr.Seal(pt, tenant, column)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return sealed
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, testKey("k1", 1))
	tests := []struct {
		name           string
		plaintext      []byte
		tenant, column string
	}{
		{"empty plaintext", []byte{}, "t1", "client_secret"},
		{"short", []byte("s3cr3t"), "t1", "client_secret"},
		{"binary", []byte{0, 1, 2, 255}, "tenant-ä", "password"},
		{"empty tenant and column", []byte("x"), "", ""},
		{"long", bytes.Repeat([]byte("a"), 10_000), strings.Repeat("t", 300), "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sealed := mustSeal(t, kr, tt.plaintext, tt.tenant, tt.column)
			if bytes.Contains(sealed, tt.plaintext) && len(tt.plaintext) > 4 {
				t.Fatal("sealed value contains the plaintext")
			}
			if want := 2 + len("k1") + nonceSize + len(tt.plaintext) + tagSize; len(sealed) != want {
				t.Fatalf("len(sealed) = %d, want %d", len(sealed), want)
			}
			got, err := kr.Open(sealed, tt.tenant, tt.column)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Fatalf("Open = %q, want %q", got, tt.plaintext)
			}
			id, err := KeyID(sealed)
			if err != nil || id != "k1" {
				t.Fatalf("KeyID = %q, %v; want k1", id, err)
			}
		})
	}
}

func TestOpenIsBoundToTenantAndColumn(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, testKey("k1", 1))
	tests := []struct {
		name                   string
		sealTenant, sealColumn string
		openTenant, openColumn string
	}{
		{"other tenant", "tenant-a", "secret", "tenant-b", "secret"},
		{"other column", "tenant-a", "secret", "tenant-a", "password"},
		{"both swapped", "tenant-a", "secret", "secret", "tenant-a"},
		{"boundary moved left", "ab", "c", "a", "bc"},
		{"boundary moved right", "a", "bc", "ab", "c"},
		{"empty tenant", "t", "c", "", "tc"},
		{"case differs", "Tenant", "c", "tenant", "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sealed := mustSeal(t, kr, []byte("s3cr3t"), tt.sealTenant, tt.sealColumn)
			pt, err := kr.Open(sealed, tt.openTenant, tt.openColumn)
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %q, %v; want ErrOpen", pt, err)
			}
			if pt != nil {
				t.Fatalf("Open returned plaintext %q with an error", pt)
			}
		})
	}
}

func TestTamperedValueFails(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, testKey("k1", 1), testKey("k2", 2))
	plaintext := []byte("s3cr3t-value")
	sealed := mustSeal(t, kr, plaintext, "t1", "secret")
	for i := range sealed {
		for _, flip := range []byte{0x01, 0x80} {
			tampered := bytes.Clone(sealed)
			tampered[i] ^= flip
			pt, err := kr.Open(tampered, "t1", "secret")
			if err == nil {
				t.Fatalf("byte %d ^ %#x: Open succeeded with %q", i, flip, pt)
			}
			if !errors.Is(err, ErrOpen) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("byte %d ^ %#x: error %v is none of the sentinels", i, flip, err)
			}
			if strings.Contains(err.Error(), string(plaintext)) {
				t.Fatalf("error %q contains the plaintext", err)
			}
		}
	}
}

func TestTruncatedAndMalformed(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, testKey("k1", 1))
	sealed := mustSeal(t, kr, []byte("s3cr3t"), "t1", "secret")
	tests := []struct {
		name   string
		sealed []byte
		want   error
	}{
		{"nil", nil, ErrMalformed},
		{"version only", sealed[:1], ErrMalformed},
		{"header only", sealed[:4], ErrMalformed},
		{"no tag", sealed[:len(sealed)-tagSize], ErrMalformed},
		{"one byte short", sealed[:len(sealed)-1], ErrOpen},
		{"shorter than nonce and tag", sealed[:4+nonceSize+tagSize-1], ErrMalformed},
		{"one byte extra", append(bytes.Clone(sealed), 0), ErrOpen},
		{"version 2", append([]byte{2}, sealed[1:]...), ErrMalformed},
		{"zero id length", append([]byte{1, 0}, sealed[2:]...), ErrMalformed},
		{"id length 255", append([]byte{1, 255}, sealed[2:]...), ErrMalformed},
		{"id with bad characters", append([]byte{1, 2, '.', '/'}, sealed[4:]...), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := kr.Open(tt.sealed, "t1", "secret")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestUnknownKey(t *testing.T) {
	t.Parallel()
	sealed := mustSeal(t, mustKeyring(t, testKey("other", 9)), []byte("x"), "t", "c")
	kr := mustKeyring(t, testKey("k1", 1))
	if _, err := kr.Open(sealed, "t", "c"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open: %v, want ErrUnknownKey", err)
	}
	if _, err := kr.Reseal(sealed, "t", "c"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Reseal: %v, want ErrUnknownKey", err)
	}
}

// TestRotation walks through a key rotation the way `rotate-keys` does it.
func TestRotation(t *testing.T) {
	t.Parallel()
	old := testKey("k0", 1)
	next := testKey("k1", 2)
	plaintext := []byte("client-secret")

	before := mustKeyring(t, old)
	sealedOld := mustSeal(t, before, plaintext, "t1", "secret")
	sealedUntouched := mustSeal(t, before, plaintext, "t2", "secret")

	// Step 1: the new key becomes active, the old one stays readable.
	during := mustKeyring(t, next, old)
	if got := during.ActiveID(); got != "k1" {
		t.Fatalf("ActiveID = %q, want k1", got)
	}
	if got, err := during.Open(sealedOld, "t1", "secret"); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("Open old value after rotation = %q, %v", got, err)
	}
	if rotate, err := during.NeedsRotation(sealedOld); err != nil || !rotate {
		t.Fatalf("NeedsRotation(old) = %v, %v; want true", rotate, err)
	}
	resealed, err := during.Reseal(sealedOld, "t1", "secret")
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	if id, _ := KeyID(resealed); id != "k1" {
		t.Fatalf("KeyID(resealed) = %q, want k1", id)
	}
	if rotate, err := during.NeedsRotation(resealed); err != nil || rotate {
		t.Fatalf("NeedsRotation(resealed) = %v, %v; want false", rotate, err)
	}
	if _, err := during.Reseal(sealedOld, "t1", "password"); !errors.Is(err, ErrOpen) {
		t.Fatalf("Reseal with wrong column: %v, want ErrOpen", err)
	}

	// Step 2: the old key is retired.
	after := mustKeyring(t, next)
	if got, err := after.Open(resealed, "t1", "secret"); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("Open resealed value after retiring k0 = %q, %v", got, err)
	}
	if _, err := after.Open(sealedUntouched, "t2", "secret"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Open un-resealed value after retiring k0: %v, want ErrUnknownKey", err)
	}
}

func TestNoncesDiffer(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, testKey("k1", 1))
	a := mustSeal(t, kr, []byte("same"), "t", "c")
	b := mustSeal(t, kr, []byte("same"), "t", "c")
	hdr := 2 + len("k1")
	if bytes.Equal(a[hdr:hdr+nonceSize], b[hdr:hdr+nonceSize]) {
		t.Fatal("two seals used the same nonce")
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are identical")
	}
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	key1 := base64.StdEncoding.EncodeToString(testKey("", 1).Secret)
	key2 := base64.StdEncoding.EncodeToString(testKey("", 2).Secret)
	raw2 := base64.RawURLEncoding.EncodeToString(testKey("", 2).Secret)
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))

	valid := []struct {
		name   string
		spec   string
		active string
		ids    []string
	}{
		{"one key", "k1:" + key1, "k1", []string{"k1"}},
		{"two keys, first active", "k2:" + key2 + ",k1:" + key1, "k2", []string{"k2", "k1"}},
		{"spaces around entries", "  k2:" + key2 + " ,\tk1:" + key1 + "\n", "k2", []string{"k2", "k1"}},
		{"raw url base64", "k_2-x:" + raw2, "k_2-x", []string{"k_2-x"}},
		{"raw std base64", "k1:" + strings.TrimRight(key1, "="), "k1", []string{"k1"}},
		{"32 character id", strings.Repeat("a", 32) + ":" + key1, strings.Repeat("a", 32), []string{strings.Repeat("a", 32)}},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kr, err := ParseKeyring(tt.spec)
			if err != nil {
				t.Fatalf("ParseKeyring: %v", err)
			}
			if kr.ActiveID() != tt.active {
				t.Errorf("ActiveID = %q, want %q", kr.ActiveID(), tt.active)
			}
			if got := strings.Join(kr.IDs(), ","); got != strings.Join(tt.ids, ",") {
				t.Errorf("IDs = %s, want %s", got, strings.Join(tt.ids, ","))
			}
		})
	}

	invalid := []struct {
		name    string
		spec    string
		wantErr string
	}{
		{"empty", "", "empty key spec"},
		{"blank", "  \n", "empty key spec"},
		{"empty entry", "k1:" + key1 + ",,k2:" + key2, "entry 2 is empty"},
		{"trailing comma", "k1:" + key1 + ",", "entry 2 is empty"},
		{"missing colon", key1, "entry 1: missing ':'"},
		{"empty id", ":" + key1, "entry 1: empty key id"},
		{"id too long", strings.Repeat("a", 33) + ":" + key1, "longer than 32"},
		{"id with dot", "k.1:" + key1, "characters other than"},
		{"key and id swapped", key1 + ":k1", "longer than 32"},
		{"duplicate id", "k1:" + key1 + ",k1:" + key2, `duplicate key id "k1"`},
		{"bad base64", "k1:" + key1[:20] + "!!" + key1[22:], `key "k1": key is not valid base64`},
		{"empty key", "k1:", `key "k1": key is not valid base64`},
		{"16-byte key", "k1:" + short, `key "k1": key is 16 bytes, want 32`},
	}
	secrets := []string{key1, key2, strings.TrimRight(key1, "="), key1[:20], short}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kr, err := ParseKeyring(tt.spec)
			if err == nil {
				t.Fatalf("ParseKeyring = %v, want error", kr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains key material", err)
				}
			}
		})
	}
}

func TestNewKeyringErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		keys    []Key
		wantErr string
	}{
		{"no keys", nil, "no keys"},
		{"short secret", []Key{{ID: "k", Secret: make([]byte, 31)}}, "key is 31 bytes, want 32"},
		{"bad id", []Key{{ID: "a b", Secret: make([]byte, 32)}}, "characters other than"},
		{"duplicate", []Key{testKey("a", 1), testKey("a", 2)}, `duplicate key id "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewKeyring(tt.keys...); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewKeyring: %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestKeyringDoesNotRetainCallerSecret(t *testing.T) {
	t.Parallel()
	k := testKey("k1", 1)
	kr := mustKeyring(t, k)
	sealed := mustSeal(t, kr, []byte("x"), "t", "c")
	clear(k.Secret) // a caller wiping its copy must not break the ring
	if _, err := kr.Open(sealed, "t", "c"); err != nil {
		t.Fatalf("Open after caller cleared its key: %v", err)
	}
}

func TestStringAndLogValueShowIDsOnly(t *testing.T) {
	t.Parallel()
	k1, k0 := testKey("k1", 1), testKey("k0", 7)
	kr := mustKeyring(t, k1, k0)
	if got, want := kr.String(), "keyring[active=k1 ids=k1,k0]"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}

	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	logger.Info("config", "keys", kr)
	logger.Info("config", "keys", fmt.Sprintf("%v %+v %#v", kr, kr, kr))
	out := buf.String()
	if !strings.Contains(out, "keys.active=k1") {
		t.Errorf("log output %q lacks the active id", out)
	}
	for _, k := range []Key{k1, k0} {
		for _, enc := range []string{
			base64.StdEncoding.EncodeToString(k.Secret),
			base64.RawURLEncoding.EncodeToString(k.Secret),
			fmt.Sprintf("%x", k.Secret),
			string(k.Secret[:8]),
			strings.Trim(fmt.Sprint(k.Secret[:8]), "[]"),
			fmt.Sprintf("%q", k.Secret[:8]),
		} {
			if strings.Contains(out, enc) {
				t.Errorf("log output leaks key bytes (%q): %s", enc, out)
			}
		}
	}
}

func TestGenerateKeySpec(t *testing.T) {
	t.Parallel()
	a, err := GenerateKeySpec()
	if err != nil {
		t.Fatalf("GenerateKeySpec: %v", err)
	}
	b, err := GenerateKeySpec()
	if err != nil {
		t.Fatalf("GenerateKeySpec: %v", err)
	}
	if a == b {
		t.Fatal("two generated specs are equal")
	}
	kr, err := ParseKeyring(b + "," + a)
	if err != nil {
		t.Fatalf("ParseKeyring(generated): %v", err)
	}
	if id, _, _ := strings.Cut(b, ":"); kr.ActiveID() != id {
		t.Fatalf("ActiveID = %q, want %q", kr.ActiveID(), id)
	}
}

func TestSealAllocations(t *testing.T) {
	// Not parallel: AllocsPerRun is disturbed by concurrent allocations.
	kr := mustKeyring(t, testKey("k1", 1))
	pt := make([]byte, 64)
	sealed := mustSeal(t, kr, pt, "tenant-1", "client_secret")
	if n := testing.AllocsPerRun(100, func() { _, _ = kr.Seal(pt, "tenant-1", "client_secret") }); n > 1 {
		t.Errorf("Seal allocates %v times, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = kr.Open(sealed, "tenant-1", "client_secret") }); n > 1 {
		t.Errorf("Open allocates %v times, want 1", n)
	}
}

// FuzzOpen checks that Open never panics on arbitrary input and that every
// failure is one of the documented sentinel errors.
func FuzzOpen(f *testing.F) {
	kr, err := NewKeyring(testKey("k1", 1), testKey("k0", 2))
	if err != nil {
		f.Fatal(err)
	}
	for _, pt := range []string{"", "s3cr3t"} {
		sealed, err := kr.Seal([]byte(pt), "tenant-1", "client_secret")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed, "tenant-1", "client_secret")
	}
	f.Fuzz(func(t *testing.T, sealed []byte, tenant, column string) {
		pt, err := kr.Open(sealed, tenant, column)
		if err != nil {
			if pt != nil {
				t.Fatalf("Open returned plaintext with error %v", err)
			}
			if !errors.Is(err, ErrOpen) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("error %v is none of the sentinels", err)
			}
			return
		}
		// Anything that opens must round-trip through this ring.
		again, err := kr.Open(mustSeal(t, kr, pt, tenant, column), tenant, column)
		if err != nil || !bytes.Equal(again, pt) {
			t.Fatalf("re-seal round trip = %q, %v", again, err)
		}
	})
}

func BenchmarkSealOpen64(b *testing.B) {
	kr := mustKeyring(b, testKey("k1", 1))
	pt := make([]byte, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		sealed, err := kr.Seal(pt, "tenant-1", "client_secret")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := kr.Open(sealed, "tenant-1", "client_secret"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal64(b *testing.B) {
	kr := mustKeyring(b, testKey("k1", 1))
	pt := make([]byte, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := kr.Seal(pt, "tenant-1", "client_secret"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen64(b *testing.B) {
	kr := mustKeyring(b, testKey("k1", 1))
	sealed := mustSeal(b, kr, make([]byte, 64), "tenant-1", "client_secret")
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		if _, err := kr.Open(sealed, "tenant-1", "client_secret"); err != nil {
			b.Fatal(err)
		}
	}
}
