package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// forwardedFor is the X-Forwarded-For the app receives: the client's address as the server
// resolves it (behind TRUSTED_PROXIES only), then each trusted proxy it came through, ending
// with the direct peer. Entries a client wrote itself are not passed on: the first address is
// always the client, and every address in it was seen by a hop the server trusts.
func forwardedFor(r *http.Request, trusted []netip.Prefix) string {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	if !inPrefixes(peer, trusted) {
		return peer.String()
	}
	// Walk from the right, as the server's client-IP rule does: each entry was appended by the
	// hop before it; the first untrusted entry is the client.
	chain := []netip.Addr{peer}
	hops := r.Header.Values("X-Forwarded-For")
walk:
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				break walk // what lies beyond a malformed entry cannot be told
			}
			a = a.Unmap()
			chain = append(chain, a)
			if !inPrefixes(a, trusted) {
				break walk
			}
		}
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
