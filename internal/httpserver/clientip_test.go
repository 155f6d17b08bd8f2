package httpserver

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/untis-partner/server/internal/gateway"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	lb := prefixes("10.0.0.0/8")
	chain := prefixes("10.0.0.0/8", "192.168.0.0/16", "fd00::/8")
	tests := []struct {
		name    string
		remote  string
		xff     []string // one element per X-Forwarded-For header line
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies, no XFF", "203.0.113.9:51234", nil, nil, "203.0.113.9"},
		{"untrusted peer forges XFF", "203.0.113.9:51234", []string{"1.2.3.4"}, nil, "203.0.113.9"},
		{"untrusted peer forges XFF, proxies configured", "203.0.113.9:51234", []string{"1.2.3.4"}, lb, "203.0.113.9"},
		{"untrusted peer forges trusted-looking XFF", "203.0.113.9:51234", []string{"10.0.0.1"}, lb, "203.0.113.9"},
		{"trusted peer without XFF", "10.0.0.5:4000", nil, lb, "10.0.0.5"},
		{"trusted peer, one entry", "10.0.0.5:4000", []string{"198.51.100.7"}, lb, "198.51.100.7"},
		{"trusted peer, client forged left entries", "10.0.0.5:4000", []string{"1.1.1.1, 2.2.2.2, 198.51.100.7"}, lb, "198.51.100.7"},
		{"chain of trusted proxies", "10.0.0.5:4000", []string{"198.51.100.7, 192.168.1.1, 10.1.1.1"}, chain, "198.51.100.7"},
		{"chain, forged entry before the real client", "10.0.0.5:4000", []string{"6.6.6.6, 198.51.100.7, 192.168.1.1"}, chain, "198.51.100.7"},
		{"all entries trusted: leftmost", "10.0.0.5:4000", []string{"192.168.1.1, 10.1.1.1"}, chain, "192.168.1.1"},
		{"multiple XFF headers", "10.0.0.5:4000", []string{"6.6.6.6, 198.51.100.7", "192.168.1.1"}, chain, "198.51.100.7"},
		{"multiple XFF headers, client in the last", "10.0.0.5:4000", []string{"6.6.6.6", "198.51.100.7"}, chain, "198.51.100.7"},
		{"spaces and empty parts", "10.0.0.5:4000", []string{"  198.51.100.7  "}, lb, "198.51.100.7"},
		{"malformed rightmost entry: the peer", "10.0.0.5:4000", []string{"198.51.100.7, garbage"}, lb, "10.0.0.5"},
		{"malformed entry behind a trusted hop: that hop", "10.0.0.5:4000", []string{"garbage, 10.2.2.2"}, lb, "10.2.2.2"},
		{"malformed entry left of the client is never reached", "10.0.0.5:4000", []string{"garbage, 198.51.100.7"}, lb, "198.51.100.7"},
		{"entry with a port is malformed", "10.0.0.5:4000", []string{"198.51.100.7:1234"}, lb, "10.0.0.5"},
		{"empty entry is malformed", "10.0.0.5:4000", []string{"198.51.100.7,"}, lb, "10.0.0.5"},
		{"unknown keyword", "10.0.0.5:4000", []string{"unknown"}, lb, "10.0.0.5"},
		{"IPv6 peer untrusted", "[2001:db8::1]:443", []string{"1.2.3.4"}, chain, "2001:db8::1"},
		{"IPv6 trusted peer, IPv6 client", "[fd00::1]:443", []string{"2001:db8::7"}, chain, "2001:db8::7"},
		{"IPv6 trusted peer, IPv4 client", "[fd00::1]:443", []string{"198.51.100.7"}, chain, "198.51.100.7"},
		{"IPv4-mapped peer is trusted as IPv4", "[::ffff:10.0.0.5]:443", []string{"198.51.100.7"}, lb, "198.51.100.7"},
		{"IPv4-mapped peer untrusted", "[::ffff:203.0.113.9]:443", []string{"1.2.3.4"}, lb, "203.0.113.9"},
		{"IPv4-mapped XFF entries are unmapped", "10.0.0.5:4000", []string{"::ffff:198.51.100.7, ::ffff:10.9.9.9"}, lb, "198.51.100.7"},
		{"peer without port", "203.0.113.9", nil, nil, "203.0.113.9"},
		{"peer not an address", "@unix", []string{"1.2.3.4"}, lb, "@unix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := gateway.ClientIP(r, tt.trusted); got != tt.want {
				t.Errorf("ClientIP(remote %s, XFF %q) = %q, want %q", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestValidRequestID(t *testing.T) {
	t.Parallel()
	long := make([]byte, 65)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		id   string
		want bool
	}{
		{"abc-123_DEF.4", true},
		{string(long[:64]), true},
		{string(long), false},
		{"", false},
		{"a b", false},
		{"a\nb", false},
		{"a\r\nX-Injected: 1", false},
		{`"quoted"`, false},
		{"ünïcode", false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		if got := validRequestID(tt.id); got != tt.want {
			t.Errorf("validRequestID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	if id := newRequestID(); !validRequestID(id) || len(id) != 24 {
		t.Errorf("newRequestID() = %q", id)
	}
	if a, b := newRequestID(), newRequestID(); a == b {
		t.Errorf("newRequestID repeats: %q twice", a)
	}
}

func TestLimitKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.7":                  "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":       "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff:1:1": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":           "192.0.2.7",
		"not an address":             "not an address",
		"2001:db8:1:3::1":            "2001:db8:1:3::/64",
	} {
		if got := limitKey(in); got != want {
			t.Errorf("limitKey(%q) = %q, want %q", in, got, want)
		}
	}
}
