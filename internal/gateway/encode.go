package gateway

import (
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// Bounds of what the identity headers carry, so that together they stay well below the 8 to 16
// KiB that common servers accept for all of a request's headers (nginx: 8 KiB per line, Node:
// 16 KiB in all), the assertion included, which repeats them.
const (
	// maxText bounds each free-text value (names, email, school name) before encoding; a longer
	// one is cut at a character boundary.
	maxText = 256
	// maxForm bounds X-Untis-Launch and X-Untis-Setup, encoded. Pairs that do not fit are left
	// out (of the header and of the assertion alike) and the omission is logged.
	maxForm = 2048
)

// percentEncode writes s as UTF-8 with every byte outside RFC 3986's unreserved characters
// (A-Z a-z 0-9 - . _ ~) as %XX, so "Jürgen" is "J%C3%BCrgen": plain ASCII in a header, and
// decoded by urldecode, decodeURIComponent, unquote, URLDecoder and Uri.UnescapeDataString
// alike. (A space is %20, never "+", so form decoders read it right too.)
func percentEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// truncate cuts s to at most n bytes without splitting a UTF-8 character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// formEncode encodes m as application/x-www-form-urlencoded, sorted by key (PHP's parse_str,
// URLSearchParams, parse_qs and HttpUtility.ParseQueryString read it), within maxForm bytes. It
// returns the encoding, the pairs it holds and the keys it had to leave out.
func formEncode(m map[string]string) (string, map[string]string, []string) {
	if len(m) == 0 {
		return "", nil, nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var (
		b       strings.Builder
		kept    = make(map[string]string, len(m))
		dropped []string
	)
	for _, k := range keys {
		pair := url.QueryEscape(k) + "=" + url.QueryEscape(m[k])
		extra := len(pair)
		if b.Len() > 0 {
			extra++
		}
		if b.Len()+extra > maxForm {
			dropped = append(dropped, k)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
		kept[k] = m[k]
	}
	return b.String(), kept, dropped
}
