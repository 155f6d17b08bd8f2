package httpserver

import "net/netip"

// Who the client is (TRUSTED_PROXIES, X-Forwarded-For) is gateway.ClientIP's to say, for the
// server and for what the gateway tells the app alike.

// limitKey is the client as the rate limits count it: its IPv4 address, or the /64 network of
// its IPv6 address (one host usually holds a whole /64, so counting single addresses would
// give it any number of buckets).
func limitKey(clientIP string) string {
	a, err := netip.ParseAddr(clientIP)
	if err != nil {
		return clientIP
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return clientIP
	}
	return p.String()
}
