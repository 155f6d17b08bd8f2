package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/secret"
)

// Key material is generated once per test binary: RSA key generation is slow.
var (
	keysOnce    sync.Once
	rsa2048Pub  string // base64 SPKI
	rsa1024Pub  string
	ecPub       string
	encKeySpec  string // "id:base64"
	encKeySpec2 string
)

func keys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		spki := func(pub any) string {
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				panic(err)
			}
			return base64.StdEncoding.EncodeToString(der)
		}
		k2048, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsa2048Pub = spki(&k2048.PublicKey)
		// A 1024-bit key, made only to prove it is refused (GenerateKey refuses < 1024 bits).
		k1024, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		rsa1024Pub = spki(&k1024.PublicKey)
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		ecPub = spki(&ec.PublicKey)
		if encKeySpec, err = secret.GenerateKeySpec(); err != nil {
			panic(err)
		}
		if encKeySpec2, err = secret.GenerateKeySpec(); err != nil {
			panic(err)
		}
	})
}

// keyMaterial returns the base64 key part of an "id:base64" spec: the secret.
func keyMaterial(spec string) string {
	_, k, _ := strings.Cut(spec, ":")
	return k
}

const dbPassword = "Sup3rS3cretDbPassw0rd"

// validEnv is a complete, valid environment for serve.
func validEnv(t *testing.T) map[string]string {
	keys(t)
	return map[string]string{
		config.EnvDatabaseURL:    "postgres://app:" + dbPassword + "@db.internal:5432/partner?sslmode=disable",
		config.EnvWebhookKeys:    rsa2048Pub,
		config.EnvEncryptionKeys: encKeySpec,
	}
}

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func with(base map[string]string, kv ...string) map[string]string {
	m := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func without(base map[string]string, names ...string) map[string]string {
	m := with(base)
	for _, n := range names {
		delete(m, n)
	}
	return m
}

// secretsOf lists the values that must never appear in an error message or a Describe attr.
func secretsOf(env map[string]string) []string {
	out := []string{dbPassword}
	for _, spec := range strings.Split(env[config.EnvEncryptionKeys], ",") {
		if k := keyMaterial(strings.TrimSpace(spec)); len(k) >= 8 {
			out = append(out, k)
		}
	}
	return out
}

func assertNoSecrets(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%q contains the secret %q", text, s)
		}
	}
}

func TestLoadValid(t *testing.T) {
	t.Parallel()
	env := validEnv(t)
	c, err := config.Load(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Require(config.EnvDatabaseURL, config.EnvWebhookKeys, config.EnvEncryptionKeys); err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != env[config.EnvDatabaseURL] {
		t.Errorf("DatabaseURL = %q", c.DatabaseURL)
	}
	if len(c.WebhookKeys) != 1 || c.WebhookKeys[0].N.BitLen() != 2048 {
		t.Errorf("WebhookKeys = %v", c.WebhookKeys)
	}
	id, _, _ := strings.Cut(encKeySpec, ":")
	if c.Keyring == nil || c.Keyring.ActiveID() != id {
		t.Errorf("Keyring = %v, want active %s", c.Keyring, id)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(getenv(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ListenAddr", c.ListenAddr, ":8080"},
		{"PublicURL", c.PublicURL.String(), "http://localhost:8080"},
		{"RedirectURL", c.RedirectURL(), "http://localhost:8080/launch"},
		{"UntisAPIURL", c.UntisAPIURL.String(), "https://api.webuntis.com"},
		{"EmbedMode", c.EmbedMode, false},
		{"TrustedProxies", len(c.TrustedProxies), 0},
		{"LogLevel", c.LogLevel, slog.LevelInfo},
		{"LogFormat", c.LogFormat, "json"},
		{"ShutdownTimeout", c.ShutdownTimeout, 20 * time.Second},
		{"DatabaseMaxConns", c.DatabaseMaxConns, int32(20)},
		{"SessionIdleTimeout", c.SessionIdleTimeout, 2 * time.Hour},
		{"SessionMaxAge", c.SessionMaxAge, 12 * time.Hour},
		{"SessionCacheTTL", c.SessionCacheTTL, 10 * time.Second},
		{"DatabaseURL", c.DatabaseURL, ""},
		{"WebhookKeys", len(c.WebhookKeys), 0},
		{"Keyring", c.Keyring == nil, true},
		{"SetupFieldsFile", c.SetupFieldsFile, ""},
		{"ShutdownDelay", c.ShutdownDelay, 5 * time.Second},
		{"LaunchLimitPerClient", c.LaunchLimitPerClient, 1500},
		{"LaunchLimitPerSchool", c.LaunchLimitPerSchool, 3000},
		// The default pattern, then the UNTIS_API_URL origin.
		{"PlatformOrigins", strings.Join(c.PlatformOrigins, " "), "https://*.webuntis.com https://api.webuntis.com"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("the defaults warn: %q", w)
	}
}

func TestNonDefaults(t *testing.T) {
	t.Parallel()
	keys(t)
	dir := t.TempDir()
	fields := filepath.Join(dir, "fields.json")
	if err := os.WriteFile(fields, []byte(`[]`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := with(validEnv(t),
		config.EnvListenAddr, "127.0.0.1:9000",
		config.EnvPublicURL, "https://partner.example.com/app/",
		config.EnvUntisAPIURL, "http://127.0.0.1:7777/",
		config.EnvWebhookKeys, rsa2048Pub+" , "+rsa2048Pub,
		config.EnvEncryptionKeys, encKeySpec2+","+encKeySpec,
		config.EnvSetupFieldsFile, fields,
		config.EnvEmbedMode, "true",
		config.EnvTrustedProxies, "10.0.0.0/8, 192.168.1.7, 2001:db8::/32, 2001:db8:1::5, ::ffff:172.16.0.1",
		config.EnvLogLevel, "debug",
		config.EnvLogFormat, "text",
		config.EnvShutdownTimeout, "3s",
		config.EnvShutdownDelay, "250ms",
		config.EnvPlatformOrigins, "https://school.example.com, https://*.untis.example:8443",
		config.EnvDatabaseMaxConns, "7",
		config.EnvSessionIdleTimeout, "10m",
		config.EnvSessionMaxAge, "10m",
		config.EnvLaunchLimitClient, "0",
		config.EnvLaunchLimitSchool, "25000",
		config.EnvSessionCacheTTL, "0s",
	)
	c, err := config.Load(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	id2, _, _ := strings.Cut(encKeySpec2, ":")
	checks := []struct {
		name      string
		got, want any
	}{
		{"ListenAddr", c.ListenAddr, "127.0.0.1:9000"},
		{"PublicURL", c.PublicURL.String(), "https://partner.example.com/app"},
		{"RedirectURL", c.RedirectURL(), "https://partner.example.com/app/launch"},
		{"UntisAPIURL", c.UntisAPIURL.String(), "http://127.0.0.1:7777"},
		{"WebhookKeys", len(c.WebhookKeys), 2},
		{"active key", c.Keyring.ActiveID(), id2},
		{"key count", len(c.Keyring.IDs()), 2},
		{"SetupFieldsFile", c.SetupFieldsFile, fields},
		{"EmbedMode", c.EmbedMode, true},
		{"LogLevel", c.LogLevel, slog.LevelDebug},
		{"LogFormat", c.LogFormat, "text"},
		{"ShutdownTimeout", c.ShutdownTimeout, 3 * time.Second},
		{"ShutdownDelay", c.ShutdownDelay, 250 * time.Millisecond},
		{"PlatformOrigins", strings.Join(c.PlatformOrigins, " "), "https://school.example.com https://*.untis.example:8443 http://127.0.0.1:7777"},
		{"DatabaseMaxConns", c.DatabaseMaxConns, int32(7)},
		{"SessionIdleTimeout", c.SessionIdleTimeout, 10 * time.Minute},
		{"SessionMaxAge", c.SessionMaxAge, 10 * time.Minute},
		{"LaunchLimitPerClient", c.LaunchLimitPerClient, 0},
		{"LaunchLimitPerSchool", c.LaunchLimitPerSchool, 25000},
		{"SessionCacheTTL", c.SessionCacheTTL, time.Duration(0)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestRedirectURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ publicURL, want string }{
		{"https://partner.example.com", "https://partner.example.com/launch"},
		{"https://partner.example.com/", "https://partner.example.com/launch"},
		{"https://partner.example.com//", "https://partner.example.com/launch"},
		{"http://localhost:8080", "http://localhost:8080/launch"},
		{"https://example.com/untis", "https://example.com/untis/launch"},
		{"https://example.com/untis/", "https://example.com/untis/launch"},
	}
	for _, tt := range tests {
		c, err := config.Load(getenv(map[string]string{config.EnvPublicURL: tt.publicURL}))
		if err != nil {
			t.Errorf("PUBLIC_URL=%q: %v", tt.publicURL, err)
			continue
		}
		if got := c.RedirectURL(); got != tt.want {
			t.Errorf("PUBLIC_URL=%q: RedirectURL() = %q, want %q", tt.publicURL, got, tt.want)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}},
		{"10.1.2.3/8", []string{"10.0.0.0/8"}}, // masked
		{"192.168.1.7", []string{"192.168.1.7/32"}},
		{"2001:db8::1", []string{"2001:db8::1/128"}},
		{" 10.0.0.1 ,, fd00::/8 ", []string{"10.0.0.1/32", "fd00::/8"}},
		// Peers are compared unmapped, so IPv4-mapped entries must become plain IPv4.
		{"::ffff:10.0.0.1", []string{"10.0.0.1/32"}},
		{"::ffff:10.0.0.0/104", []string{"10.0.0.0/8"}},
	}
	for _, tt := range tests {
		c, err := config.Load(getenv(map[string]string{config.EnvTrustedProxies: tt.in}))
		if err != nil {
			t.Errorf("TRUSTED_PROXIES=%q: %v", tt.in, err)
			continue
		}
		var got []string
		for _, p := range c.TrustedProxies {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("TRUSTED_PROXIES=%q: got %v, want %v", tt.in, got, tt.want)
		}
	}
	// The parsed prefixes contain the addresses a peer arrives from.
	c, err := config.Load(getenv(map[string]string{config.EnvTrustedProxies: "::ffff:10.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.TrustedProxies[0].Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("%v does not contain 10.0.0.1", c.TrustedProxies[0])
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	keys(t)
	base := validEnv(t)
	missingFile := filepath.Join(t.TempDir(), "missing.json")
	encKey := keyMaterial(encKeySpec)
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"DATABASE_URL mysql", with(base, config.EnvDatabaseURL, "mysql://app:"+dbPassword+"@db/partner"), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form with a bad keyword", with(base, config.EnvDatabaseURL, "host=db Us-er=app password="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form with a bad port", with(base, config.EnvDatabaseURL, "host=db port=x password="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL unparsable", with(base, config.EnvDatabaseURL, "postgres://app:"+dbPassword+"@db:port/x"), config.EnvDatabaseURL},
		{"DATABASE_URL http", with(base, config.EnvDatabaseURL, "http://app:"+dbPassword+"@db/partner"), config.EnvDatabaseURL},
		{"DATABASE_URL jdbc", with(base, config.EnvDatabaseURL, "jdbc:postgresql://db/partner?password="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL pgx5 scheme", with(base, config.EnvDatabaseURL, "pgx5://app:"+dbPassword+"@db/partner"), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form with an upper-case keyword", with(base, config.EnvDatabaseURL, "HOST=db password="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form with an empty keyword", with(base, config.EnvDatabaseURL, "host=db ="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form, a word without =", with(base, config.EnvDatabaseURL, "host=db password="+dbPassword+" dbname"), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form, unterminated quote", with(base, config.EnvDatabaseURL, "host=db password='"+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form, port out of range", with(base, config.EnvDatabaseURL, "host=db port=99999 password="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form, bad sslmode", with(base, config.EnvDatabaseURL, "host=db sslmode=sometimes password="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL keyword form, scheme-like garbage", with(base, config.EnvDatabaseURL, "garbage:x=y password="+dbPassword), config.EnvDatabaseURL},
		{"DATABASE_URL no keywords at all", with(base, config.EnvDatabaseURL, "db "+dbPassword), config.EnvDatabaseURL},
		{"LISTEN_ADDR without port", with(base, config.EnvListenAddr, "localhost"), config.EnvListenAddr},
		{"LISTEN_ADDR bare port", with(base, config.EnvListenAddr, "8080"), config.EnvListenAddr},
		{"PUBLIC_URL relative", with(base, config.EnvPublicURL, "/app"), config.EnvPublicURL},
		{"PUBLIC_URL host only", with(base, config.EnvPublicURL, "partner.example.com"), config.EnvPublicURL},
		{"PUBLIC_URL with query", with(base, config.EnvPublicURL, "https://partner.example.com/?x=1"), config.EnvPublicURL},
		{"PUBLIC_URL with fragment", with(base, config.EnvPublicURL, "https://partner.example.com/#top"), config.EnvPublicURL},
		{"PUBLIC_URL with user", with(base, config.EnvPublicURL, "https://me:pw@partner.example.com/"), config.EnvPublicURL},
		{"UNTIS_API_URL ftp", with(base, config.EnvUntisAPIURL, "ftp://api.webuntis.com"), config.EnvUntisAPIURL},
		{"UNTIS_API_URL no host", with(base, config.EnvUntisAPIURL, "https://"), config.EnvUntisAPIURL},
		{"UNTIS_WEBHOOK_KEYS not base64", with(base, config.EnvWebhookKeys, "not base64!"), config.EnvWebhookKeys},
		{"UNTIS_WEBHOOK_KEYS PEM", with(base, config.EnvWebhookKeys, "-----BEGIN PUBLIC KEY-----\n"+rsa2048Pub+"\n-----END PUBLIC KEY-----"), config.EnvWebhookKeys},
		{"UNTIS_WEBHOOK_KEYS not X.509", with(base, config.EnvWebhookKeys, base64.StdEncoding.EncodeToString([]byte("hello, world"))), config.EnvWebhookKeys},
		{"UNTIS_WEBHOOK_KEYS not RSA", with(base, config.EnvWebhookKeys, ecPub), config.EnvWebhookKeys},
		{"UNTIS_WEBHOOK_KEYS 1024-bit", with(base, config.EnvWebhookKeys, rsa1024Pub), config.EnvWebhookKeys},
		{"UNTIS_WEBHOOK_KEYS one good one bad", with(base, config.EnvWebhookKeys, rsa2048Pub+",AAAA"), config.EnvWebhookKeys},
		{"UNTIS_WEBHOOK_KEYS only commas", with(base, config.EnvWebhookKeys, " , ,"), config.EnvWebhookKeys},
		{"ENCRYPTION_KEYS key without id", with(base, config.EnvEncryptionKeys, encKey), config.EnvEncryptionKeys},
		{"ENCRYPTION_KEYS bad base64", with(base, config.EnvEncryptionKeys, "k1:"+encKey+"!!"), config.EnvEncryptionKeys},
		{"ENCRYPTION_KEYS short key", with(base, config.EnvEncryptionKeys, "k1:"+encKey[:24]), config.EnvEncryptionKeys},
		{"ENCRYPTION_KEYS key as id", with(base, config.EnvEncryptionKeys, encKey+":k1"), config.EnvEncryptionKeys},
		{"ENCRYPTION_KEYS url-safe key as id", with(base, config.EnvEncryptionKeys, strings.NewReplacer("+", "-", "/", "_", "=", "").Replace(encKey)+":"+encKey), config.EnvEncryptionKeys},
		{"ENCRYPTION_KEYS duplicate id", with(base, config.EnvEncryptionKeys, "k1:"+encKey+",k1:"+encKey), config.EnvEncryptionKeys},
		{"ENCRYPTION_KEYS empty entry", with(base, config.EnvEncryptionKeys, encKeySpec+",,"), config.EnvEncryptionKeys},
		{"ENCRYPTION_KEYS bad id", with(base, config.EnvEncryptionKeys, "k 1:"+encKey), config.EnvEncryptionKeys},
		{"SETUP_FIELDS_FILE missing", with(base, config.EnvSetupFieldsFile, missingFile), config.EnvSetupFieldsFile},
		{"EMBED_MODE yes", with(base, config.EnvEmbedMode, "yes"), config.EnvEmbedMode},
		{"TRUSTED_PROXIES /33", with(base, config.EnvTrustedProxies, "10.0.0.0/33"), config.EnvTrustedProxies},
		{"TRUSTED_PROXIES nonsense", with(base, config.EnvTrustedProxies, "nonsense"), config.EnvTrustedProxies},
		{"TRUSTED_PROXIES one bad", with(base, config.EnvTrustedProxies, "10.0.0.0/8,300.1.1.1"), config.EnvTrustedProxies},
		{"LOG_LEVEL loud", with(base, config.EnvLogLevel, "loud"), config.EnvLogLevel},
		{"LOG_LEVEL warning", with(base, config.EnvLogLevel, "warning"), config.EnvLogLevel},
		{"LOG_LEVEL offset form", with(base, config.EnvLogLevel, "INFO+2"), config.EnvLogLevel},
		{"LOG_LEVEL number", with(base, config.EnvLogLevel, "-4"), config.EnvLogLevel},
		{"PLATFORM_ORIGINS no scheme", with(base, config.EnvPlatformOrigins, "school.webuntis.com"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS ftp", with(base, config.EnvPlatformOrigins, "ftp://school.webuntis.com"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS with a path", with(base, config.EnvPlatformOrigins, "https://school.webuntis.com/WebUntis"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS with a query", with(base, config.EnvPlatformOrigins, "https://school.webuntis.com?x=1"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS with user info", with(base, config.EnvPlatformOrigins, "https://me@school.webuntis.com"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS no host", with(base, config.EnvPlatformOrigins, "https://"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS wildcard inside", with(base, config.EnvPlatformOrigins, "https://school.*.com"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS wildcard over a TLD", with(base, config.EnvPlatformOrigins, "https://*.com"), config.EnvPlatformOrigins},
		{"UNTIS_API_URL host with a semicolon", with(base, config.EnvUntisAPIURL, "https://api.example;script-src"), config.EnvUntisAPIURL},
		{"PUBLIC_URL wildcard host", with(base, config.EnvPublicURL, "https://*.example.com"), config.EnvPublicURL},
		{"PLATFORM_ORIGINS wildcard in a label", with(base, config.EnvPlatformOrigins, "https://sch*.webuntis.com"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS two wildcards", with(base, config.EnvPlatformOrigins, "https://*.*.webuntis.com"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS bare wildcard", with(base, config.EnvPlatformOrigins, "https://*"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS just a star", with(base, config.EnvPlatformOrigins, "*"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS one good one bad", with(base, config.EnvPlatformOrigins, "https://*.webuntis.com,webuntis"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS CSP injection", with(base, config.EnvPlatformOrigins, "https://a.example;script-src"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS quote", with(base, config.EnvPlatformOrigins, "https://a.example'unsafe-inline'"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS empty label", with(base, config.EnvPlatformOrigins, "https://a..example"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS wildcard over nothing", with(base, config.EnvPlatformOrigins, "https://*."), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS empty port", with(base, config.EnvPlatformOrigins, "https://a.example:"), config.EnvPlatformOrigins},
		{"PLATFORM_ORIGINS port out of range", with(base, config.EnvPlatformOrigins, "https://a.example:70000"), config.EnvPlatformOrigins},
		{"SHUTDOWN_DELAY negative", with(base, config.EnvShutdownDelay, "-1s"), config.EnvShutdownDelay},
		{"SHUTDOWN_DELAY words", with(base, config.EnvShutdownDelay, "a while"), config.EnvShutdownDelay},
		{"SHUTDOWN_DELAY no unit", with(base, config.EnvShutdownDelay, "5"), config.EnvShutdownDelay},
		{"LOG_FORMAT xml", with(base, config.EnvLogFormat, "xml"), config.EnvLogFormat},
		{"SHUTDOWN_TIMEOUT words", with(base, config.EnvShutdownTimeout, "soon"), config.EnvShutdownTimeout},
		{"SHUTDOWN_TIMEOUT no unit", with(base, config.EnvShutdownTimeout, "20"), config.EnvShutdownTimeout},
		{"SHUTDOWN_TIMEOUT negative", with(base, config.EnvShutdownTimeout, "-1s"), config.EnvShutdownTimeout},
		{"SHUTDOWN_TIMEOUT zero", with(base, config.EnvShutdownTimeout, "0s"), config.EnvShutdownTimeout},
		{"SESSION_IDLE_TIMEOUT bad", with(base, config.EnvSessionIdleTimeout, "2 hours"), config.EnvSessionIdleTimeout},
		{"SESSION_MAX_AGE bad", with(base, config.EnvSessionMaxAge, "forever"), config.EnvSessionMaxAge},
		{"SESSION_MAX_AGE below idle", with(base, config.EnvSessionIdleTimeout, "3h", config.EnvSessionMaxAge, "1h"), config.EnvSessionMaxAge},
		{"SESSION_CACHE_TTL negative", with(base, config.EnvSessionCacheTTL, "-1s"), config.EnvSessionCacheTTL},
		{"SESSION_CACHE_TTL over 5m", with(base, config.EnvSessionCacheTTL, "6m"), config.EnvSessionCacheTTL},
		{"SESSION_CACHE_TTL no unit", with(base, config.EnvSessionCacheTTL, "10"), config.EnvSessionCacheTTL},
		{"DATABASE_MAX_CONNS words", with(base, config.EnvDatabaseMaxConns, "many"), config.EnvDatabaseMaxConns},
		{"DATABASE_MAX_CONNS 1", with(base, config.EnvDatabaseMaxConns, "1"), config.EnvDatabaseMaxConns},
		{"DATABASE_MAX_CONNS 1001", with(base, config.EnvDatabaseMaxConns, "1001"), config.EnvDatabaseMaxConns},
		{"DATABASE_MAX_CONNS fraction", with(base, config.EnvDatabaseMaxConns, "2.5"), config.EnvDatabaseMaxConns},
		{"LAUNCH_LIMIT_PER_CLIENT negative", with(base, config.EnvLaunchLimitClient, "-1"), config.EnvLaunchLimitClient},
		{"LAUNCH_LIMIT_PER_CLIENT words", with(base, config.EnvLaunchLimitClient, "lots"), config.EnvLaunchLimitClient},
		{"LAUNCH_LIMIT_PER_SCHOOL rate", with(base, config.EnvLaunchLimitSchool, "50/s"), config.EnvLaunchLimitSchool},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(getenv(tt.env))
			if err == nil {
				// Not the Config itself: it holds the raw secrets.
				t.Fatalf("Load succeeded, want an error naming %s", tt.wantVar)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, want *config.Error", err, err)
			}
			if ce.Var != tt.wantVar {
				t.Errorf("error names %s, want %s: %v", ce.Var, tt.wantVar, err)
			}
			if !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error text %q does not name %s", err, tt.wantVar)
			}
			assertNoSecrets(t, err.Error(), secretsOf(tt.env)...)
			assertNoSecrets(t, err.Error(), dbPassword, encKey)
		})
	}
}

func TestRequire(t *testing.T) {
	t.Parallel()
	base := validEnv(t)
	all := []string{config.EnvDatabaseURL, config.EnvWebhookKeys, config.EnvEncryptionKeys}
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string // "" = no error
	}{
		{"all present", base, ""},
		{"missing DATABASE_URL", without(base, config.EnvDatabaseURL), config.EnvDatabaseURL},
		{"missing UNTIS_WEBHOOK_KEYS", without(base, config.EnvWebhookKeys), config.EnvWebhookKeys},
		{"missing ENCRYPTION_KEYS", without(base, config.EnvEncryptionKeys), config.EnvEncryptionKeys},
		{"blank DATABASE_URL", with(base, config.EnvDatabaseURL, "   "), config.EnvDatabaseURL},
		{"empty environment", map[string]string{}, config.EnvDatabaseURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(getenv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			err = c.Require(all...)
			if tt.wantVar == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != tt.wantVar {
				t.Fatalf("Require error = %v, want one naming %s", err, tt.wantVar)
			}
			if !strings.Contains(err.Error(), tt.wantVar) || !strings.Contains(err.Error(), tt.wantVar+"_FILE") {
				t.Errorf("error %q should name %s and mention %s_FILE", err, tt.wantVar, tt.wantVar)
			}
		})
	}

	// migrate needs only the database.
	c, err := config.Load(getenv(map[string]string{config.EnvDatabaseURL: base[config.EnvDatabaseURL]}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Require(config.EnvDatabaseURL); err != nil {
		t.Errorf("Require(DATABASE_URL) = %v", err)
	}
	// Any other option is required by its raw value.
	if err := c.Require(config.EnvSetupFieldsFile); err == nil || !strings.Contains(err.Error(), config.EnvSetupFieldsFile) {
		t.Errorf("Require(SETUP_FIELDS_FILE) = %v, want an error naming it", err)
	}
}

func TestFileVariants(t *testing.T) {
	t.Parallel()
	base := validEnv(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	names := []string{config.EnvDatabaseURL, config.EnvWebhookKeys, config.EnvEncryptionKeys}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			value := base[name]
			for _, ending := range []string{"", "\n", "\r\n", "\n\n"} {
				file := write(name+strings.NewReplacer("\r", "r", "\n", "n").Replace(ending), value+ending)
				env := with(without(base, name), name+"_FILE", file)
				c, err := config.Load(getenv(env))
				if err != nil {
					t.Fatalf("ending %q: %v", ending, err)
				}
				if err := c.Require(names...); err != nil {
					t.Fatalf("ending %q: %v", ending, err)
				}
				switch name {
				case config.EnvDatabaseURL:
					if c.DatabaseURL != value {
						t.Errorf("ending %q: DatabaseURL = %q, want %q", ending, c.DatabaseURL, value)
					}
				case config.EnvWebhookKeys:
					if len(c.WebhookKeys) != 1 {
						t.Errorf("ending %q: %d keys", ending, len(c.WebhookKeys))
					}
				case config.EnvEncryptionKeys:
					id, _, _ := strings.Cut(value, ":")
					if c.Keyring.ActiveID() != id {
						t.Errorf("ending %q: active key %q, want %q", ending, c.Keyring.ActiveID(), id)
					}
				}
				// A value read from a file is masked like one from the environment.
				for _, a := range c.Describe() {
					assertNoSecrets(t, a.String(), dbPassword, keyMaterial(encKeySpec))
				}
			}

			// Both set: an error naming the variable.
			file := write(name+"-both", value)
			_, err := config.Load(getenv(with(base, name+"_FILE", file)))
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != name {
				t.Errorf("both %s and %s_FILE: error = %v, want one naming %s", name, name, err, name)
			} else {
				assertNoSecrets(t, err.Error(), dbPassword, keyMaterial(encKeySpec))
			}

			// Unreadable file: an error naming NAME_FILE (and the path, which is no secret).
			missing := filepath.Join(dir, "does-not-exist-"+name)
			_, err = config.Load(getenv(with(without(base, name), name+"_FILE", missing)))
			if !errors.As(err, &ce) || ce.Var != name+"_FILE" {
				t.Errorf("unreadable %s_FILE: error = %v, want one naming %s_FILE", name, err, name)
			} else if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), name+"_FILE") {
				t.Errorf("unreadable %s_FILE: error %q should name the variable and the path", name, err)
			}

			// A directory is not a readable file either.
			_, err = config.Load(getenv(with(without(base, name), name+"_FILE", dir)))
			if !errors.As(err, &ce) || ce.Var != name+"_FILE" {
				t.Errorf("%s_FILE a directory: error = %v, want one naming %s_FILE", name, err, name)
			}

			// A malformed value in the file is reported under NAME, without the value.
			bad := write(name+"-bad", "garbage:"+keyMaterial(encKeySpec)+"!!\n")
			_, err = config.Load(getenv(with(without(base, name), name+"_FILE", bad)))
			if name == config.EnvWebhookKeys || name == config.EnvEncryptionKeys {
				if !errors.As(err, &ce) || ce.Var != name {
					t.Errorf("malformed %s_FILE: error = %v, want one naming %s", name, err, name)
				}
			} else if err == nil {
				t.Errorf("malformed %s_FILE: no error", name)
			}
			if err != nil {
				assertNoSecrets(t, err.Error(), keyMaterial(encKeySpec))
			}
		})
	}
}

// The _FILE form is only for the secrets: for other options it is ignored.
func TestFileVariantOnlyForSecrets(t *testing.T) {
	t.Parallel()
	c, err := config.Load(getenv(map[string]string{"LISTEN_ADDR_FILE": "/nonexistent"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8080" {
		t.Errorf("ListenAddr = %q", c.ListenAddr)
	}
}

// A Config printed or logged by accident shows what Describe shows, secrets masked.
func TestConfigPrintsMasked(t *testing.T) {
	t.Parallel()
	c, err := config.Load(getenv(validEnv(t)))
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "config", c)
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), c.String(), logged.String()} {
		if strings.Contains(out, dbPassword) || strings.Contains(out, keyMaterial(encKeySpec)) {
			t.Fatalf("a printed Config leaks a secret: %s", strings.ReplaceAll(strings.ReplaceAll(out, dbPassword, "[DB PASSWORD]"), keyMaterial(encKeySpec), "[KEY]"))
		}
		if !strings.Contains(out, config.EnvListenAddr) {
			t.Errorf("printed Config lacks the settings: %s", out)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	env := with(validEnv(t),
		config.EnvEncryptionKeys, encKeySpec+","+encKeySpec2,
		config.EnvListenAddr, "127.0.0.1:9999",
		config.EnvPublicURL, "https://partner.example.com",
		config.EnvTrustedProxies, "10.0.0.0/8",
		config.EnvLogFormat, "text",
	)
	c, err := config.Load(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range c.Describe() {
		got[a.Key] = a.Value.String()
		// Neither the password nor any key material, in any form.
		assertNoSecrets(t, a.String(), dbPassword, keyMaterial(encKeySpec), keyMaterial(encKeySpec2),
			env[config.EnvDatabaseURL], env[config.EnvEncryptionKeys])
	}
	want := map[string]string{
		config.EnvListenAddr:      "127.0.0.1:9999",
		config.EnvPublicURL:       "https://partner.example.com",
		config.EnvUntisAPIURL:     "https://api.webuntis.com", // default shown
		config.EnvTrustedProxies:  "10.0.0.0/8",
		config.EnvLogFormat:       "text",
		config.EnvLogLevel:        "info",
		config.EnvEmbedMode:       "false",
		config.EnvSetupFieldsFile: "(unset)",
		config.EnvShutdownTimeout: "20s",
		config.EnvShutdownDelay:   "5s",
		config.EnvPlatformOrigins: "https://*.webuntis.com",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Describe %s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{config.EnvDatabaseURL, config.EnvEncryptionKeys} {
		if !strings.HasPrefix(got[k], "(set") {
			t.Errorf("Describe %s = %q, want it masked as (set, ...)", k, got[k])
		}
	}
	// The public webhook keys are no secret: they are described (count and fingerprint), not masked.
	if w := got[config.EnvWebhookKeys]; !strings.HasPrefix(w, "1 key") || strings.HasPrefix(w, "(") {
		t.Errorf("Describe %s = %q", config.EnvWebhookKeys, got[config.EnvWebhookKeys])
	}

	// Unset secrets say so.
	c, err = config.Load(getenv(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Describe() {
		if a.Key == config.EnvDatabaseURL && a.Value.String() != "(unset)" {
			t.Errorf("unset DATABASE_URL described as %q", a.Value)
		}
	}
}

func TestParseWebhookKeys(t *testing.T) {
	t.Parallel()
	keys(t)
	got, err := config.ParseWebhookKeys(rsa2048Pub + "," + rsa2048Pub)
	if err != nil || len(got) != 2 {
		t.Fatalf("ParseWebhookKeys = %v, %v", got, err)
	}
	for _, in := range []string{"", ",", ecPub, rsa1024Pub} {
		if _, err := config.ParseWebhookKeys(in); err == nil {
			t.Errorf("ParseWebhookKeys(%.20q) succeeded", in)
		}
	}
}

// Both forms libpq knows are accepted as they are: a postgres:// URL and "keyword=value" pairs.
func TestDatabaseURLForms(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"postgres URL", "postgres://app:" + dbPassword + "@db.internal:5432/partner?sslmode=disable"},
		{"postgresql URL", "postgresql://app:" + dbPassword + "@db/partner"},
		{"URL without password", "postgres://app@db/partner"},
		{"keyword form", "host=db port=5432 user=app password=" + dbPassword + " dbname=x"},
		{"keyword form, quoted password with a space", "host=db user=app password='" + dbPassword + " x' dbname=partner sslmode=require"},
		{"keyword form, unix socket", "host=/var/run/postgresql dbname=partner"},
		{"keyword form, dbname only", "dbname=partner"},
		{"keyword form, surrounding spaces", "  host=db dbname=partner password=" + dbPassword + "  "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := with(validEnv(t), config.EnvDatabaseURL, tt.in)
			c, err := config.Load(getenv(env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.DatabaseURL != strings.TrimSpace(tt.in) {
				t.Errorf("DatabaseURL = %q, want %q", c.DatabaseURL, strings.TrimSpace(tt.in))
			}
			for _, a := range c.Describe() {
				assertNoSecrets(t, a.String(), dbPassword, "user=app", "db.internal")
			}
		})
	}
}

func TestPlatformOrigins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		origins string // PLATFORM_ORIGINS; "" = unset
		apiURL  string // UNTIS_API_URL; "" = unset
		want    []string
	}{
		{"defaults", "", "", []string{"https://*.webuntis.com", "https://api.webuntis.com"}},
		{"simulator API", "", "http://127.0.0.1:7777", []string{"https://*.webuntis.com", "http://127.0.0.1:7777"}},
		{"API origin, not its path", "", "https://api.example.com/base/", []string{"https://*.webuntis.com", "https://api.example.com"}},
		{"explicit list", "https://a.example, https://*.b.example:8443", "", []string{"https://a.example", "https://*.b.example:8443", "https://api.webuntis.com"}},
		{"API origin listed already: not appended again", "https://api.webuntis.com,https://*.webuntis.com", "", []string{"https://api.webuntis.com", "https://*.webuntis.com"}},
		{"simulator origin listed already", "http://127.0.0.1:7777", "http://127.0.0.1:7777", []string{"http://127.0.0.1:7777"}},
		{"normalised: case, trailing slash", "HTTPS://School.WebUntis.COM/", "", []string{"https://school.webuntis.com", "https://api.webuntis.com"}},
		{"IPv6 literal", "http://[::1]:8080", "", []string{"http://[::1]:8080", "https://api.webuntis.com"}},
		{"container host name", "http://platform_sim:7777", "", []string{"http://platform_sim:7777", "https://api.webuntis.com"}},
		{"empty entries skipped", " , https://a.example ,, ", "", []string{"https://a.example", "https://api.webuntis.com"}},
		{"only commas: the API origin alone", ",", "", []string{"https://api.webuntis.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if tt.origins != "" {
				env[config.EnvPlatformOrigins] = tt.origins
			}
			if tt.apiURL != "" {
				env[config.EnvUntisAPIURL] = tt.apiURL
			}
			c, err := config.Load(getenv(env))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(c.PlatformOrigins, " "); got != strings.Join(tt.want, " ") {
				t.Errorf("PlatformOrigins = %q, want %q", c.PlatformOrigins, tt.want)
			}
		})
	}
}

func TestShutdownDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 5 * time.Second},
		{"0s", 0},
		{"0", 0},
		{"1500ms", 1500 * time.Millisecond},
		{"1m", time.Minute},
	}
	for _, tt := range tests {
		c, err := config.Load(getenv(map[string]string{config.EnvShutdownDelay: tt.in}))
		if err != nil {
			t.Errorf("SHUTDOWN_DELAY=%q: %v", tt.in, err)
			continue
		}
		if c.ShutdownDelay != tt.want {
			t.Errorf("SHUTDOWN_DELAY=%q: %v, want %v", tt.in, c.ShutdownDelay, tt.want)
		}
	}
}

func TestLogLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"", slog.LevelInfo, false},
		{"debug", slog.LevelDebug, false},
		{"DEBUG", slog.LevelDebug, false},
		{"info", slog.LevelInfo, false},
		{"Info", slog.LevelInfo, false},
		{"warn", slog.LevelWarn, false},
		{"WARN", slog.LevelWarn, false},
		{"error", slog.LevelError, false},
		{"eRRoR", slog.LevelError, false},
		{"warning", 0, true},
		{"trace", 0, true},
		{"INFO+2", 0, true},
		{"DEBUG-4", 0, true},
		{"0", 0, true},
		{"info,debug", 0, true},
	}
	for _, tt := range tests {
		c, err := config.Load(getenv(map[string]string{config.EnvLogLevel: tt.in}))
		if tt.wantErr {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != config.EnvLogLevel {
				t.Errorf("LOG_LEVEL=%q: error %v, want one naming %s", tt.in, err, config.EnvLogLevel)
				continue
			}
			// The error lists what is accepted.
			for _, l := range []string{"debug", "info", "warn", "error"} {
				if !strings.Contains(err.Error(), l) {
					t.Errorf("LOG_LEVEL=%q: error %q does not list %s", tt.in, err, l)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("LOG_LEVEL=%q: %v", tt.in, err)
		} else if c.LogLevel != tt.want {
			t.Errorf("LOG_LEVEL=%q: %v, want %v", tt.in, c.LogLevel, tt.want)
		}
	}
}

// SETUP_FIELDS_FILE is checked at start, so a broken file stops the server, not the setup page.
func TestSetupFieldsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		wantErr string // "" = accepted; else a part of the error
	}{
		{"empty list", `[]`, ""},
		{"every type", `[{"name":"a","type":"text"},{"name":"b","type":"email"},{"name":"c","type":"url"},{"name":"d","type":"select","options":["x","y"]},{"name":"e","type":"checkbox"}]`, ""},
		{"type left out", `[{"name":"school_code","label":"School code"}]`, ""},
		{"empty file", ``, "not a JSON list"},
		{"null", `null`, "not a JSON list"},
		{"not JSON", `name: school_code`, "not a JSON list"},
		{"an object, not a list", `{"name":"school_code"}`, "not a JSON list"},
		{"a list of strings", `["school_code"]`, "not a JSON list"},
		{"no name", `[{"type":"text"}]`, "no name"},
		{"empty name", `[{"name":"a"},{"name":"","type":"text"}]`, "field 2 has no name"},
		{"duplicate name", `[{"name":"a"},{"name":"b"},{"name":"a","type":"email"}]`, `"a" appears twice`},
		{"unknown type", `[{"name":"age","type":"number"}]`, `"number"`},
		{"type in capitals", `[{"name":"a","type":"Text"}]`, `"Text"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, "fields-"+strconv.Itoa(i)+".json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := config.Load(getenv(map[string]string{config.EnvSetupFieldsFile: path}))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if c.SetupFieldsFile != path {
					t.Errorf("SetupFieldsFile = %q, want %q", c.SetupFieldsFile, path)
				}
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != config.EnvSetupFieldsFile {
				t.Fatalf("error %v, want one naming %s", err, config.EnvSetupFieldsFile)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), config.EnvSetupFieldsFile) {
				t.Errorf("error %q, want it to name %s and say %q", err, config.EnvSetupFieldsFile, tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// Plain http is fine on the developer's own machine; anywhere else the Secure cookies would not
// stick, and the server says so at start.
func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		publicURL string
		warn      bool
	}{
		{"https://partner.example.com", false},
		{"https://10.0.0.5", false},
		{"http://localhost:8080", false},
		{"http://localhost", false},
		{"http://app.localhost:8080", false},
		{"http://127.0.0.1:8080", false},
		{"http://127.5.6.7", false},
		{"http://[::1]:8080", false},
		{"http://LOCALHOST:8080", false},
		{"http://partner.example.com", true},
		{"http://10.0.0.5:8080", true},
		{"http://0.0.0.0:8080", true},
		{"http://localhost.example.com", true},
		{"http://notlocalhost", true},
		{"http://[::2]", true},
	}
	for _, tt := range tests {
		c, err := config.Load(getenv(map[string]string{config.EnvPublicURL: tt.publicURL}))
		if err != nil {
			t.Errorf("PUBLIC_URL=%q: %v", tt.publicURL, err)
			continue
		}
		w := c.Warnings()
		switch {
		case !tt.warn && len(w) != 0:
			t.Errorf("PUBLIC_URL=%q: warnings %q, want none", tt.publicURL, w)
		case tt.warn && len(w) != 1:
			t.Errorf("PUBLIC_URL=%q: warnings %q, want one", tt.publicURL, w)
		case tt.warn && !strings.Contains(w[0], config.EnvPublicURL):
			t.Errorf("PUBLIC_URL=%q: warning %q does not name %s", tt.publicURL, w[0], config.EnvPublicURL)
		}
	}
}

// The pages' branding and the schools' default time zone: defaults, accepted forms, and a
// refusal that names the variable for anything that would go into a page, a style sheet or the
// CSP unchecked.
func TestBrandingAndTimezone(t *testing.T) {
	t.Parallel()
	c, err := config.Load(getenv(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AppName != "Partner App" || c.AppLogoURL != "" || c.AppAccentColor != "" || c.SchoolTimezone.String() != "Europe/Vienna" {
		t.Errorf("defaults: %q %q %q %v", c.AppName, c.AppLogoURL, c.AppAccentColor, c.SchoolTimezone)
	}
	c, err = config.Load(getenv(map[string]string{config.EnvAppName: "  Klassenbuch Plus ", config.EnvAppLogoURL: "https://cdn.partner.example/logo.svg",
		config.EnvAppAccentColor: "#AA00cc", config.EnvSchoolTimezone: "Europe/Berlin"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AppName != "Klassenbuch Plus" || c.AppLogoURL != "https://cdn.partner.example/logo.svg" || c.AppAccentColor != "#aa00cc" || c.SchoolTimezone.String() != "Europe/Berlin" {
		t.Errorf("values: %q %q %q %v", c.AppName, c.AppLogoURL, c.AppAccentColor, c.SchoolTimezone)
	}
	if c, err := config.Load(getenv(map[string]string{config.EnvAppLogoURL: "/static/logo.svg"})); err != nil || c.AppLogoURL != "/static/logo.svg" {
		t.Errorf("a path on this server: %v", err)
	}
	for name, bad := range map[string][]string{
		config.EnvAppName:        {strings.Repeat("x", 61), "two\nlines"},
		config.EnvAppLogoURL:     {"http://cdn.example/logo.png", "//cdn.example/logo.png", "javascript:alert(1)", "https://user:pw@cdn.example/l.png", "https:///l.png", "/a b.png", "/\\evil"},
		config.EnvAppAccentColor: {"red", "#fff", "#12345g", "#123456; background: url(x)", "0b6bcb"},
		config.EnvSchoolTimezone: {"Mars/Olympus", "Local", "+01:00"},
	} {
		for _, v := range bad {
			_, err := config.Load(getenv(map[string]string{name: v}))
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != name {
				t.Errorf("%s=%q: %v, want an error naming it", name, v, err)
			}
		}
	}
}

func TestGatewaySettings(t *testing.T) {
	t.Parallel()
	// Defaults: the built-in app, with forward-auth's identity settings.
	c, err := config.Load(getenv(validEnv(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway() || c.UpstreamURL != nil || c.PublicPaths.Len() != 0 || c.LandingPaths.Len() != 0 ||
		c.GatewayMaxBody != 32<<20 || c.UpstreamTimeout != 30*time.Second || c.GatewayIdleTimeout != time.Minute ||
		c.IdentityAudience != "http://localhost:8080" || c.IdentityTTL != 5*time.Minute || c.IdentityKeyRotation != 168*time.Hour {
		t.Errorf("gateway defaults: %+v", c)
	}

	c, err = config.Load(getenv(with(validEnv(t),
		config.EnvPublicURL, "https://app.example.com",
		config.EnvUpstreamURL, "http://127.0.0.1:3000/base/",
		config.EnvGatewayPublicPaths, "/assets/, /health",
		config.EnvGatewayMaxBody, "512KiB",
		config.EnvUpstreamTimeout, "0",
		config.EnvGatewayIdleTimeout, "5m",
		config.EnvGatewayLandingPaths, "entry:lesson=/lessons, role:teacher=/t",
		config.EnvIdentityJWTAudience, "urn:partner:app",
		config.EnvIdentityJWTTTL, "2m",
		config.EnvIdentityKeyRotation, "720h",
	)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Gateway() || c.UpstreamURL.String() != "http://127.0.0.1:3000/base" || c.PublicPaths.Len() != 2 ||
		c.GatewayMaxBody != 512<<10 || c.UpstreamTimeout != 0 || c.GatewayIdleTimeout != 5*time.Minute ||
		c.LandingPaths.Len() != 2 || c.LandingPaths.Target("/", map[string]string{"lesson_id": "1"}, "teacher") != "/lessons" ||
		c.IdentityAudience != "urn:partner:app" || c.IdentityTTL != 2*time.Minute || c.IdentityKeyRotation != 720*time.Hour {
		t.Errorf("gateway settings: %+v", c)
	}
	for v, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "32MiB": 32 << 20, "1GiB": 1 << 30, "100B": 100, "2 mib": 2 << 20} {
		c, err := config.Load(getenv(with(validEnv(t), config.EnvGatewayMaxBody, v)))
		if err != nil || c.GatewayMaxBody != want {
			t.Errorf("GATEWAY_MAX_BODY=%s: %v, %v", v, c, err)
		}
	}
	d := c.Describe()
	found := map[string]bool{}
	for _, a := range d {
		found[a.Key] = true
	}
	for _, name := range []string{config.EnvUpstreamURL, config.EnvGatewayPublicPaths, config.EnvGatewayMaxBody, config.EnvUpstreamTimeout,
		config.EnvGatewayIdleTimeout, config.EnvGatewayLandingPaths, config.EnvIdentityJWTAudience, config.EnvIdentityJWTTTL, config.EnvIdentityKeyRotation} {
		if !found[name] {
			t.Errorf("Describe lacks %s", name)
		}
	}
}

func TestGatewaySettingErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	base := validEnv(t)
	up := with(base, config.EnvUpstreamURL, "http://127.0.0.1:3000")
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"UPSTREAM_URL relative", with(base, config.EnvUpstreamURL, "/app"), config.EnvUpstreamURL},
		{"UPSTREAM_URL ftp", with(base, config.EnvUpstreamURL, "ftp://127.0.0.1:3000"), config.EnvUpstreamURL},
		{"UPSTREAM_URL with query", with(base, config.EnvUpstreamURL, "http://127.0.0.1:3000/?x=1"), config.EnvUpstreamURL},
		{"UPSTREAM_URL with user", with(base, config.EnvUpstreamURL, "http://u:p@127.0.0.1:3000"), config.EnvUpstreamURL},
		{"UPSTREAM_URL is PUBLIC_URL", with(base, config.EnvUpstreamURL, "http://localhost:8080"), config.EnvUpstreamURL},
		{"UPSTREAM_URL is the listener", with(base, config.EnvUpstreamURL, "http://127.0.0.1:8080", config.EnvPublicURL, "https://app.example.com"), config.EnvUpstreamURL},
		{"public paths without UPSTREAM_URL", with(base, config.EnvGatewayPublicPaths, "/assets/"), config.EnvGatewayPublicPaths},
		{"public path relative", with(up, config.EnvGatewayPublicPaths, "assets/"), config.EnvGatewayPublicPaths},
		{"public path everything", with(up, config.EnvGatewayPublicPaths, "/"), config.EnvGatewayPublicPaths},
		{"public path with ..", with(up, config.EnvGatewayPublicPaths, "/a/../b"), config.EnvGatewayPublicPaths},
		{"public path reserved", with(up, config.EnvGatewayPublicPaths, "/launch"), config.EnvGatewayPublicPaths},
		{"public path with ?", with(up, config.EnvGatewayPublicPaths, "/a?b"), config.EnvGatewayPublicPaths},
		{"max body words", with(base, config.EnvGatewayMaxBody, "large"), config.EnvGatewayMaxBody},
		{"max body negative", with(base, config.EnvGatewayMaxBody, "-1"), config.EnvGatewayMaxBody},
		{"max body decimal unit", with(base, config.EnvGatewayMaxBody, "32MB"), config.EnvGatewayMaxBody},
		{"max body fraction", with(base, config.EnvGatewayMaxBody, "1.5MiB"), config.EnvGatewayMaxBody},
		{"max body huge", with(base, config.EnvGatewayMaxBody, "99999999GiB"), config.EnvGatewayMaxBody},
		{"upstream timeout negative", with(base, config.EnvUpstreamTimeout, "-1s"), config.EnvUpstreamTimeout},
		{"upstream timeout no unit", with(base, config.EnvUpstreamTimeout, "30"), config.EnvUpstreamTimeout},
		{"idle timeout words", with(base, config.EnvGatewayIdleTimeout, "a minute"), config.EnvGatewayIdleTimeout},
		{"landing without kind", with(base, config.EnvGatewayLandingPaths, "lesson=/l"), config.EnvGatewayLandingPaths},
		{"landing unknown entry", with(base, config.EnvGatewayLandingPaths, "entry:timetable=/t"), config.EnvGatewayLandingPaths},
		{"landing off-site", with(base, config.EnvGatewayLandingPaths, "role:teacher=https://evil.example/"), config.EnvGatewayLandingPaths},
		{"landing reserved", with(base, config.EnvGatewayLandingPaths, "role:teacher=/admin"), config.EnvGatewayLandingPaths},
		{"landing twice", with(base, config.EnvGatewayLandingPaths, "role:teacher=/a,role:teacher=/b"), config.EnvGatewayLandingPaths},
		{"audience with a newline", with(base, config.EnvIdentityJWTAudience, "a\nb"), config.EnvIdentityJWTAudience},
		{"TTL over 5m", with(base, config.EnvIdentityJWTTTL, "10m"), config.EnvIdentityJWTTTL},
		{"TTL too short", with(base, config.EnvIdentityJWTTTL, "1s"), config.EnvIdentityJWTTTL},
		{"TTL zero", with(base, config.EnvIdentityJWTTTL, "0"), config.EnvIdentityJWTTTL},
		{"rotation too often", with(base, config.EnvIdentityKeyRotation, "10m"), config.EnvIdentityKeyRotation},
		{"rotation words", with(base, config.EnvIdentityKeyRotation, "weekly"), config.EnvIdentityKeyRotation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(getenv(tt.env))
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != tt.wantVar || !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error %v, want one naming %s", err, tt.wantVar)
			}
		})
	}
}

// EVENTS_URL and EVENTS_SECRET: both or neither; a URL the events may go to; Standard Webhooks
// secrets; every mistake names its variable and never quotes a secret.
func TestEventsSettings(t *testing.T) {
	t.Parallel()
	base := validEnv(t)
	const secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	const hooks = "https://app.example.com/untis/events?token=query-token-value"

	c, err := config.Load(getenv(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.EventsURL != nil || len(c.EventsSecrets) != 0 || c.EventsTimeout != 10*time.Second || c.EventsRetryFor != 72*time.Hour ||
		c.EventsRetention != 720*time.Hour {
		t.Errorf("defaults: %v %v %v %v %v", c.EventsURL, c.EventsSecrets, c.EventsTimeout, c.EventsRetryFor, c.EventsRetention)
	}

	c, err = config.Load(getenv(with(base, config.EnvEventsURL, hooks, config.EnvEventsSecret, secretA+" "+secretB,
		config.EnvEventsTimeout, "3s", config.EnvEventsRetryFor, "24h", config.EnvEventsRetention, "168h")))
	if err != nil {
		t.Fatal(err)
	}
	if c.EventsURL.String() != hooks || len(c.EventsSecrets) != 2 || c.EventsTimeout != 3*time.Second || c.EventsRetryFor != 24*time.Hour ||
		c.EventsRetention != 168*time.Hour {
		t.Errorf("set: %v %d %v %v %v", c.EventsURL, len(c.EventsSecrets), c.EventsTimeout, c.EventsRetryFor, c.EventsRetention)
	}
	for _, a := range c.Describe() {
		assertNoSecrets(t, a.String(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", strings.TrimPrefix(secretB, "whsec_"), "query-token-value")
		if a.Key == config.EnvEventsURL && a.Value.String() != "https://app.example.com/untis/events?(query hidden)" {
			t.Errorf("Describe %s = %q", a.Key, a.Value)
		}
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}

	file := filepath.Join(t.TempDir(), "events-secret")
	if err := os.WriteFile(file, []byte(secretA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := config.Load(getenv(with(base, config.EnvEventsURL, hooks, config.EnvEventsSecret+"_FILE", file))); err != nil || len(c.EventsSecrets) != 1 {
		t.Errorf("EVENTS_SECRET_FILE: %v", err)
	}

	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"URL without a secret", with(base, config.EnvEventsURL, hooks), config.EnvEventsSecret},
		{"not a URL", with(base, config.EnvEventsURL, "app.example.com/events", config.EnvEventsSecret, secretA), config.EnvEventsURL},
		{"ftp", with(base, config.EnvEventsURL, "ftp://app.example.com/events", config.EnvEventsSecret, secretA), config.EnvEventsURL},
		{"user info", with(base, config.EnvEventsURL, "https://u:"+dbPassword+"@app.example.com/", config.EnvEventsSecret, secretA), config.EnvEventsURL},
		{"fragment", with(base, config.EnvEventsURL, "https://app.example.com/#x", config.EnvEventsSecret, secretA), config.EnvEventsURL},
		{"wildcard host", with(base, config.EnvEventsURL, "https://*.example.com/", config.EnvEventsSecret, secretA), config.EnvEventsURL},
		{"secret without prefix", with(base, config.EnvEventsSecret, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), config.EnvEventsSecret},
		{"secret too short", with(base, config.EnvEventsSecret, "whsec_"+base64.StdEncoding.EncodeToString([]byte("short"))), config.EnvEventsSecret},
		{"timeout zero", with(base, config.EnvEventsTimeout, "0s"), config.EnvEventsTimeout},
		{"timeout too long", with(base, config.EnvEventsTimeout, "10m"), config.EnvEventsTimeout},
		{"retry window zero", with(base, config.EnvEventsRetryFor, "0s"), config.EnvEventsRetryFor},
		{"retention not a duration", with(base, config.EnvEventsRetention, "30 days"), config.EnvEventsRetention},
	} {
		_, err := config.Load(getenv(tc.env))
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != tc.wantVar {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.wantVar)
			continue
		}
		assertNoSecrets(t, err.Error(), dbPassword, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "query-token-value")
	}

	for u, warn := range map[string]bool{
		"http://127.0.0.1:9090/events": false, "http://localhost/events": false, "https://app.example.com": false,
		"http://app.example.com/events": true, "http://10.0.0.5/events": true,
	} {
		c, err := config.Load(getenv(with(base, config.EnvEventsURL, u, config.EnvEventsSecret, secretA)))
		if err != nil {
			t.Fatal(err)
		}
		if w := c.Warnings(); (len(w) == 1 && strings.Contains(w[0], config.EnvEventsURL)) != warn {
			t.Errorf("EVENTS_URL=%s: warnings %q", u, w)
		}
	}
}

const internalToken = "0123456789abcdefghijklmnopqrstuvwxyzABCD"

// The internal API is off by default; with a listener it needs a token (also from a file, never
// printed), takes write rules and a body limit, and never shares the public listener's port.
func TestInternalAPISettings(t *testing.T) {
	t.Parallel()
	c, err := config.Load(getenv(validEnv(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.InternalListenAddr != "" || len(c.InternalAPITokens) != 0 || c.InternalWritePaths.Len() != 0 || c.InternalMaxBody != 1<<20 {
		t.Errorf("internal API defaults: %+v", c)
	}
	env := with(validEnv(t),
		config.EnvInternalListenAddr, "127.0.0.1:8082",
		config.EnvInternalAPIToken, internalToken+", "+internalToken+"-next",
		config.EnvInternalWritePaths, "POST /WebUntis/api/rest/extern/v1/students, PUT|PATCH /WebUntis/api/rest/extern/v1/students/*",
		config.EnvInternalMaxBody, "0",
	)
	c, err = config.Load(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.InternalListenAddr != "127.0.0.1:8082" || len(c.InternalAPITokens) != 2 || c.InternalAPITokens[1] != internalToken+"-next" ||
		c.InternalWritePaths.Len() != 2 || c.InternalMaxBody != 0 ||
		!c.InternalWritePaths.Allows("PATCH", "/WebUntis/api/rest/extern/v1/students/12") ||
		c.InternalWritePaths.Allows("POST", "/WebUntis/api/rest/extern/v1/students/12") {
		t.Errorf("internal API settings: %+v", c)
	}
	assertNoSecrets(t, c.String(), internalToken)
	found := false
	for _, a := range c.Describe() {
		if a.Key == config.EnvInternalAPIToken {
			found = true
			assertNoSecrets(t, a.Value.String(), internalToken)
		}
	}
	if !found {
		t.Error("Describe lacks INTERNAL_API_TOKEN")
	}

	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(internalToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = config.Load(getenv(with(validEnv(t), config.EnvInternalListenAddr, ":8082", config.EnvInternalAPIToken+"_FILE", file)))
	if err != nil || len(c.InternalAPITokens) != 1 || c.InternalAPITokens[0] != internalToken {
		t.Errorf("INTERNAL_API_TOKEN_FILE: %v %v", c, err)
	}
}

func TestInternalAPISettingErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	base := validEnv(t)
	on := with(base, config.EnvInternalListenAddr, "127.0.0.1:8082", config.EnvInternalAPIToken, internalToken)
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"listener without a token", with(base, config.EnvInternalListenAddr, "127.0.0.1:8082"), config.EnvInternalAPIToken},
		{"listener with an empty token list", with(base, config.EnvInternalListenAddr, "127.0.0.1:8082", config.EnvInternalAPIToken, " , "), config.EnvInternalAPIToken},
		{"token too short", with(on, config.EnvInternalAPIToken, "secret"), config.EnvInternalAPIToken},
		{"token with a space", with(on, config.EnvInternalAPIToken, strings.Repeat("a", 20)+" "+strings.Repeat("b", 20)), config.EnvInternalAPIToken},
		{"listener not host:port", with(on, config.EnvInternalListenAddr, "8082"), config.EnvInternalListenAddr},
		{"listener on the public port", with(on, config.EnvInternalListenAddr, "127.0.0.1:8080"), config.EnvInternalListenAddr},
		{"listener on the public address", with(on, config.EnvInternalListenAddr, ":9000", config.EnvListenAddr, "10.0.0.1:9000"), config.EnvInternalListenAddr},
		{"write paths without a listener", with(base, config.EnvInternalWritePaths, "/WebUntis/api/rest/extern/v1/students"), config.EnvInternalWritePaths},
		{"write path outside extern", with(on, config.EnvInternalWritePaths, "/ims/oneroster/v1p1/users"), config.EnvInternalWritePaths},
		{"write path the whole extern API", with(on, config.EnvInternalWritePaths, "/WebUntis/api/rest/extern/"), config.EnvInternalWritePaths},
		{"write path with ..", with(on, config.EnvInternalWritePaths, "/WebUntis/api/rest/extern/v1/../students"), config.EnvInternalWritePaths},
		{"write path encoded", with(on, config.EnvInternalWritePaths, "/WebUntis/api/rest/extern/v1/stud%65nts"), config.EnvInternalWritePaths},
		{"write method unknown", with(on, config.EnvInternalWritePaths, "GET /WebUntis/api/rest/extern/v1/students"), config.EnvInternalWritePaths},
		{"max body words", with(on, config.EnvInternalMaxBody, "big"), config.EnvInternalMaxBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(getenv(tt.env))
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != tt.wantVar || !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error %v, want one naming %s", err, tt.wantVar)
			}
			assertNoSecrets(t, fmt.Sprint(err), internalToken)
		})
	}
}

func TestCalendarSettings(t *testing.T) {
	t.Parallel()
	c, err := config.Load(getenv(validEnv(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.CalendarUpstreamPath != "/untis/calendar" || c.CalendarTimeout != 5*time.Second || c.CalendarMaxBytes != 5<<20 ||
		c.CalendarMaxEvents != 5000 || c.CalendarMaxDays != 62 {
		t.Errorf("calendar defaults: path %q timeout %s bytes %d events %d days %d", c.CalendarUpstreamPath, c.CalendarTimeout,
			c.CalendarMaxBytes, c.CalendarMaxEvents, c.CalendarMaxDays)
	}
	c, err = config.Load(getenv(with(validEnv(t),
		config.EnvCalendarUpstreamPath, "/api/v1/timetable-events",
		config.EnvCalendarTimeout, "750ms",
		config.EnvCalendarMaxBytes, "0",
		config.EnvCalendarMaxEvents, "0",
		config.EnvCalendarMaxDays, "366",
	)))
	if err != nil {
		t.Fatal(err)
	}
	if c.CalendarUpstreamPath != "/api/v1/timetable-events" || c.CalendarTimeout != 750*time.Millisecond || c.CalendarMaxBytes != 0 ||
		c.CalendarMaxEvents != 0 || c.CalendarMaxDays != 366 {
		t.Errorf("calendar settings: path %q timeout %s bytes %d events %d days %d", c.CalendarUpstreamPath, c.CalendarTimeout,
			c.CalendarMaxBytes, c.CalendarMaxEvents, c.CalendarMaxDays)
	}
	found := map[string]bool{}
	for _, a := range c.Describe() {
		found[a.Key] = true
	}
	for _, name := range []string{config.EnvCalendarUpstreamPath, config.EnvCalendarTimeout, config.EnvCalendarMaxBytes,
		config.EnvCalendarMaxEvents, config.EnvCalendarMaxDays} {
		if !found[name] {
			t.Errorf("Describe lacks %s", name)
		}
	}
	base := validEnv(t)
	for _, tt := range []struct{ name, variable, value string }{
		{"path relative", config.EnvCalendarUpstreamPath, "untis/calendar"},
		{"path a URL", config.EnvCalendarUpstreamPath, "http://evil.example/cal"},
		{"path scheme-relative", config.EnvCalendarUpstreamPath, "//evil.example/cal"},
		{"path with a query", config.EnvCalendarUpstreamPath, "/cal?x=1"},
		{"path with ..", config.EnvCalendarUpstreamPath, "/a/../cal"},
		{"path escaped", config.EnvCalendarUpstreamPath, "/a%2Fb"},
		{"timeout zero", config.EnvCalendarTimeout, "0"},
		{"timeout beyond the write timeout", config.EnvCalendarTimeout, "30s"},
		{"timeout no unit", config.EnvCalendarTimeout, "5"},
		{"bytes words", config.EnvCalendarMaxBytes, "big"},
		{"events negative", config.EnvCalendarMaxEvents, "-1"},
		{"events fraction", config.EnvCalendarMaxEvents, "1.5"},
		{"days words", config.EnvCalendarMaxDays, "a month"},
	} {
		_, err := config.Load(getenv(with(base, tt.variable, tt.value)))
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != tt.variable {
			t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.variable)
		}
	}
}
