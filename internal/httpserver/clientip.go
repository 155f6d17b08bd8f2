package httpserver

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientIP returns the address of the client. X-Forwarded-For is believed only when the direct
// peer is a trusted proxy, and then only up to the first hop that is not itself trusted: walking
// from the right, each entry was appended by the hop before it, so the rightmost untrusted entry
// is the last one a trusted proxy saw. (chi's RealIP believes any header and is spoofable.)
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := remoteAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return r.RemoteAddr
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := r.Header.Values("X-Forwarded-For")
	ip := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// A malformed entry ends the chain: we cannot tell what lies beyond it.
				return ip.String()
			}
			ip = a.Unmap()
			if !isTrusted(ip, trusted) {
				return ip.String()
			}
		}
	}
	return ip.String()
}

func remoteAddr(s string) netip.Addr {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

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
