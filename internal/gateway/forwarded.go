package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// This file is the one place that says who the client is: the server's client address (logs,
// rate limits; httpserver) and the X-Forwarded-For the app receives both come from clientChain.

// ClientIP returns the address of the client. X-Forwarded-For is believed only when the direct
// peer is a trusted proxy (TRUSTED_PROXIES), and then only up to the first hop that is not itself
// trusted: walking from the right, each entry was appended by the hop before it, so the rightmost
// untrusted entry is the last one a trusted proxy saw. (chi's RealIP believes any header and is
// spoofable.) A RemoteAddr that is no IP address (a Unix socket) is returned as it is.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	var buf [4]netip.Addr
	chain := clientChain(buf[:0], r, trusted)
	if len(chain) == 0 {
		return r.RemoteAddr
	}
	return chain[len(chain)-1].String()
}

// FromTrustedProxy reports whether the request's direct peer is one of the trusted proxies.
func FromTrustedProxy(r *http.Request, trusted []netip.Prefix) bool {
	return inPrefixes(peerAddr(r.RemoteAddr), trusted)
}

// forwardedFor is the X-Forwarded-For the app receives: the client's address as ClientIP
// resolves it, then each trusted proxy it came through, ending with the direct peer. Entries a
// client wrote itself are not passed on: the first address is always the client, and every
// address in it was seen by a hop the server trusts.
func forwardedFor(r *http.Request, trusted []netip.Prefix) string {
	var buf [4]netip.Addr
	chain := clientChain(buf[:0], r, trusted)
	if len(chain) == 0 {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	var b strings.Builder
	for i := len(chain) - 1; i >= 0; i-- {
		b.WriteString(chain[i].String())
		if i > 0 {
			b.WriteString(", ")
		}
	}
	return b.String()
}

// clientChain appends to dst the addresses the request came through, as far as trusted hops
// vouch for them: the direct peer first, then the X-Forwarded-For entries from the right while
// the hop that appended each is trusted. The last address is the client. A malformed entry ends
// the chain (what lies beyond it cannot be told). It appends nothing when RemoteAddr is no IP
// address.
func clientChain(dst []netip.Addr, r *http.Request, trusted []netip.Prefix) []netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return dst
	}
	dst = append(dst, peer)
	if !inPrefixes(peer, trusted) {
		return dst
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return dst
			}
			a = a.Unmap()
			dst = append(dst, a)
			if !inPrefixes(a, trusted) {
				return dst
			}
		}
	}
	return dst
}

func peerAddr(s string) netip.Addr {
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

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
