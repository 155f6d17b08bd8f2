package metrics

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

type metricType string

const (
	typeCounter   metricType = "counter"
	typeGauge     metricType = "gauge"
	typeHistogram metricType = "histogram"
	typeSummary   metricType = "summary"
)

// validMetricName reports whether name matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validLabelName reports whether name matches [a-zA-Z_][a-zA-Z0-9_]* and
// does not start with "__", which Prometheus reserves for itself.
func validLabelName(name string) bool {
	if name == "" || strings.HasPrefix(name, "__") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// checkNames panics on an invalid metric name or label names; reserved are
// label names the type writes itself (le, quantile).
func checkNames(typ metricType, name string, labelNames []string, reserved ...string) {
	if !validMetricName(name) {
		panic(fmt.Sprintf("metrics: %s %q: invalid metric name", typ, name))
	}
	for i, l := range labelNames {
		if !validLabelName(l) {
			panic(fmt.Sprintf("metrics: %s %s: invalid label name %q", typ, name, l))
		}
		if slices.Contains(reserved, l) {
			panic(fmt.Sprintf("metrics: %s %s: label name %q is reserved", typ, name, l))
		}
		if slices.Contains(labelNames[:i], l) {
			panic(fmt.Sprintf("metrics: %s %s: duplicate label name %q", typ, name, l))
		}
	}
}

// appendHeader appends the HELP and TYPE lines of a family.
func appendHeader(b []byte, name, help string, typ metricType) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscaped(b, help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

// appendLabels appends `a="x",b="y"` (no braces) with escaped values.
func appendLabels(b []byte, names, values []string) []byte {
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, n...)
		b = append(b, `="`...)
		b = appendEscaped(b, values[i], true)
		b = append(b, '"')
	}
	return b
}

// appendEscaped escapes backslash and newline (HELP text) and, in label
// values, the double quote. Invalid UTF-8 becomes U+FFFD because the format
// must be UTF-8 and Prometheus rejects the whole scrape otherwise.
func appendEscaped(b []byte, s string, labelValue bool) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && labelValue:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendSample appends `name{labels} value\n`; labels is pre-rendered and
// may be empty.
func appendSample(b []byte, name, suffix, labels string, v float64) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if labels != "" {
		b = append(b, '{')
		b = append(b, labels...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	return append(b, '\n')
}

// appendFloat formats v as Prometheus parses it: shortest round-trip
// representation, +Inf, -Inf and NaN.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
