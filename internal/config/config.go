// Package config reads the server's configuration from the environment, as contract.md names it.
//
// Every option is declared once in the options table below, with its default, whether it is a
// secret (masked wherever configuration is printed) and whether it may come from a NAME_FILE.
// A value that is present is always validated; whether a value is required depends on the command
// (serve needs everything, migrate only the database), so Load parses and Require checks.
package config

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/secret"
)

// Names of the environment variables (contract.md, "Configuration").
const (
	EnvDatabaseURL        = "DATABASE_URL"
	EnvListenAddr         = "LISTEN_ADDR"
	EnvPublicURL          = "PUBLIC_URL"
	EnvUntisAPIURL        = "UNTIS_API_URL"
	EnvWebhookKeys        = "UNTIS_WEBHOOK_KEYS"
	EnvEncryptionKeys     = "ENCRYPTION_KEYS"
	EnvSetupFieldsFile    = "SETUP_FIELDS_FILE"
	EnvEmbedMode          = "EMBED_MODE"
	EnvTrustedProxies     = "TRUSTED_PROXIES"
	EnvLogLevel           = "LOG_LEVEL"
	EnvLogFormat          = "LOG_FORMAT"
	EnvShutdownTimeout    = "SHUTDOWN_TIMEOUT"
	EnvDatabaseMaxConns   = "DATABASE_MAX_CONNS"
	EnvSessionIdleTimeout = "SESSION_IDLE_TIMEOUT"
	EnvSessionMaxAge      = "SESSION_MAX_AGE"
)

// Config is the validated configuration.
type Config struct {
	DatabaseURL     string
	ListenAddr      string
	PublicURL       *url.URL
	UntisAPIURL     *url.URL
	WebhookKeys     []*rsa.PublicKey
	Keyring         *secret.Keyring
	SetupFieldsFile string
	EmbedMode       bool
	TrustedProxies  []netip.Prefix
	LogLevel        slog.Level
	LogFormat       string // "json" or "text"

	// Operational knobs beyond contract.md, all with safe defaults.
	ShutdownTimeout    time.Duration
	DatabaseMaxConns   int32
	SessionIdleTimeout time.Duration
	SessionMaxAge      time.Duration

	raw map[string]string // as given, for Describe
}

// Error is a configuration problem; it always names the variable.
type Error struct {
	Var string
	Msg string
}

func (e *Error) Error() string { return "config: " + e.Var + ": " + e.Msg }

type option struct {
	name     string
	def      string
	secret   bool // masked in Describe
	fromFile bool // NAME_FILE accepted
	apply    func(c *Config, v string) error
	// describe, when set, prints the parsed value instead of the raw one (e.g. long keys).
	describe func(c *Config) string
}

// options is the single table of every setting the server reads.
var options = []option{
	{name: EnvDatabaseURL, secret: true, fromFile: true, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return errors.New("must be a postgres:// or postgresql:// URL")
		}
		c.DatabaseURL = v
		return nil
	}},
	{name: EnvListenAddr, def: ":8080", apply: func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("must be host:port or :port (%v)", err)
		}
		c.ListenAddr = v
		return nil
	}},
	{name: EnvPublicURL, def: "http://localhost:8080", apply: func(c *Config, v string) error {
		u, err := parseBaseURL(v)
		c.PublicURL = u
		return err
	}},
	{name: EnvUntisAPIURL, def: "https://api.webuntis.com", apply: func(c *Config, v string) error {
		u, err := parseBaseURL(v)
		c.UntisAPIURL = u
		return err
	}},
	{name: EnvWebhookKeys, fromFile: true, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		keys, err := ParseWebhookKeys(v)
		c.WebhookKeys = keys
		return err
	}, describe: func(c *Config) string {
		// Public keys are not secret, but a fingerprint is what an operator compares with the
		// key Untis publishes, and it keeps the start-up line short.
		fps := make([]string, len(c.WebhookKeys))
		for i, k := range c.WebhookKeys {
			fps[i] = keyFingerprint(k)
		}
		return fmt.Sprintf("%d key(s), SHA-256 %s", len(fps), strings.Join(fps, ", "))
	}},
	{name: EnvEncryptionKeys, secret: true, fromFile: true, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		kr, err := secret.ParseKeyring(v)
		if err != nil {
			return err
		}
		c.Keyring = kr
		return nil
	}},
	{name: EnvSetupFieldsFile, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		if _, err := os.Stat(v); err != nil {
			return fmt.Errorf("cannot read the file: %w", err)
		}
		c.SetupFieldsFile = v
		return nil
	}},
	{name: EnvEmbedMode, def: "false", apply: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		c.EmbedMode = b
		return nil
	}},
	{name: EnvTrustedProxies, apply: func(c *Config, v string) error {
		for _, s := range splitList(v) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				addr, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", s)
				}
				p = netip.PrefixFrom(addr, addr.BitLen())
			}
			// Peers are compared unmapped (httpserver.clientIP), so ::ffff:a.b.c.d/n is a.b.c.d/(n-96).
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
		return nil
	}},
	{name: EnvLogLevel, def: "info", apply: func(c *Config, v string) error {
		return c.LogLevel.UnmarshalText([]byte(v))
	}},
	{name: EnvLogFormat, def: "json", apply: func(c *Config, v string) error {
		if v != "json" && v != "text" {
			return errors.New("must be json or text")
		}
		c.LogFormat = v
		return nil
	}},
	{name: EnvShutdownTimeout, def: "20s", apply: durationOption(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{name: EnvSessionIdleTimeout, def: "2h", apply: durationOption(func(c *Config) *time.Duration { return &c.SessionIdleTimeout })},
	{name: EnvSessionMaxAge, def: "12h", apply: durationOption(func(c *Config) *time.Duration { return &c.SessionMaxAge })},
	{name: EnvDatabaseMaxConns, def: "20", apply: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 1000 {
			return errors.New("must be a whole number from 2 to 1000")
		}
		c.DatabaseMaxConns = int32(n)
		return nil
	}},
}

// Load reads every option through getenv (os.Getenv in production, a map in tests). Values that
// are present are validated; Require says which ones a command cannot do without.
func Load(getenv func(string) string) (*Config, error) {
	c := &Config{raw: map[string]string{}}
	for _, o := range options {
		v, err := lookup(getenv, o)
		if err != nil {
			return nil, err
		}
		c.raw[o.name] = v
		if v == "" {
			v = o.def
		}
		if err := o.apply(c, v); err != nil {
			return nil, &Error{Var: o.name, Msg: err.Error()}
		}
	}
	if c.SessionMaxAge < c.SessionIdleTimeout {
		return nil, &Error{Var: EnvSessionMaxAge, Msg: "must not be shorter than " + EnvSessionIdleTimeout}
	}
	return c, nil
}

// Require reports the first of the named variables that has no value.
func (c *Config) Require(names ...string) error {
	for _, n := range names {
		missing := false
		switch n {
		case EnvDatabaseURL:
			missing = c.DatabaseURL == ""
		case EnvWebhookKeys:
			missing = len(c.WebhookKeys) == 0
		case EnvEncryptionKeys:
			missing = c.Keyring == nil
		default:
			missing = c.raw[n] == ""
		}
		if missing {
			return &Error{Var: n, Msg: "is required (also accepted as " + n + "_FILE)"}
		}
	}
	return nil
}

// RedirectURL is the OIDC redirect_uri: PUBLIC_URL + /launch.
func (c *Config) RedirectURL() string { return c.PublicURL.String() + "/launch" }

// Describe lists the effective configuration with secrets masked, for the start-up log line.
func (c *Config) Describe() []slog.Attr {
	attrs := make([]slog.Attr, 0, len(options))
	for _, o := range options {
		v := c.raw[o.name]
		switch {
		case v != "" && o.describe != nil:
			v = o.describe(c)
		case v == "" && o.def != "":
			v = o.def
		case v != "" && o.secret:
			v = "(set, " + strconv.Itoa(len(v)) + " chars)"
		case v == "":
			v = "(unset)"
		}
		attrs = append(attrs, slog.String(o.name, v))
	}
	return attrs
}

func lookup(getenv func(string) string, o option) (string, error) {
	v := getenv(o.name)
	if !o.fromFile {
		return strings.TrimSpace(v), nil
	}
	file := getenv(o.name + "_FILE")
	if file == "" {
		return strings.TrimSpace(v), nil
	}
	if v != "" {
		return "", &Error{Var: o.name, Msg: "set both " + o.name + " and " + o.name + "_FILE; set only one"}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is not a secret; the error names it so an operator can fix the mount.
		return "", &Error{Var: o.name + "_FILE", Msg: fmt.Sprintf("cannot read %s: %v", file, errors.Unwrap(err))}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// ParseWebhookKeys parses UNTIS_WEBHOOK_KEYS: comma-separated base64 X.509 SubjectPublicKeyInfo
// RSA keys without PEM armour (the form the Untis developer docs publish).
func ParseWebhookKeys(v string) ([]*rsa.PublicKey, error) {
	var keys []*rsa.PublicKey
	for i, s := range splitList(v) {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("key %d is not base64 (give the X.509 SubjectPublicKeyInfo without PEM armour)", i+1)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("key %d is not an X.509 public key: %v", i+1, err)
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("key %d is not an RSA key", i+1)
		}
		if rk.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key %d is %d bits; at least 2048 are required", i+1, rk.N.BitLen())
		}
		keys = append(keys, rk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys given")
	}
	return keys, nil
}

// keyFingerprint is the first 8 bytes of the SHA-256 of the key's SubjectPublicKeyInfo, in hex.
func keyFingerprint(k *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "?"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

func parseBaseURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("must be an absolute http:// or https:// URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("must not contain a query, fragment or user info")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func durationOption(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("must be a positive duration such as 30s, 15m or 2h")
		}
		*field(c) = d
		return nil
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
