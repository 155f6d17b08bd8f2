package metrics

import (
	"fmt"
	"slices"
	"strings"
)

// Writer collects the metrics a collector computes at scrape time (see
// Registry.NewCollector). The registry sorts them into the output with the
// registered families. A Writer is not safe for concurrent use.
type Writer struct {
	r        *Registry
	families map[string]*Family
}

// Family is a metric family being written by a collector.
type Family struct {
	name, help string
	typ        metricType
	labelNames []string
	buf        []byte // rendered sample lines
	samples    []collectedSample
}

type collectedSample struct {
	values     []string // for sorting
	start, end int      // the sample's lines in buf
}

// Counter starts (or continues) a counter family with the given label
// names. Invalid names, a name a registered metric uses, or a second call
// with another type or other label names panic: like registration
// mistakes, they are programming errors that the first scrape in a test
// reveals.
func (w *Writer) Counter(name, help string, labelNames ...string) *Family {
	return w.family(typeCounter, name, help, labelNames)
}

// Gauge starts (or continues) a gauge family; see Counter.
func (w *Writer) Gauge(name, help string, labelNames ...string) *Family {
	return w.family(typeGauge, name, help, labelNames)
}

// Sample writes one sample with label values in the order of the family's
// label names; it panics if their number is wrong.
func (f *Family) Sample(value float64, labelValues ...string) {
	if len(labelValues) != len(f.labelNames) {
		panic(fmt.Sprintf("metrics: %s: got %d label values, want %d (%s)",
			f.name, len(labelValues), len(f.labelNames), strings.Join(f.labelNames, ", ")))
	}
	start := len(f.buf)
	f.buf = appendSample(f.buf, f.name, "", string(appendLabels(nil, f.labelNames, labelValues)), value)
	f.samples = append(f.samples, collectedSample{values: slices.Clone(labelValues), start: start, end: len(f.buf)})
}

// summary writes an unlabelled summary, for go_gc_duration_seconds.
func (w *Writer) summary(name, help string, quantiles, values []float64, sum float64, count uint64) {
	f := w.family(typeSummary, name, help, nil)
	start := len(f.buf)
	for i, q := range quantiles {
		f.buf = appendSample(f.buf, name, "", `quantile="`+string(appendFloat(nil, q))+`"`, values[i])
	}
	f.buf = appendSample(f.buf, name, "_sum", "", sum)
	f.buf = appendSample(f.buf, name, "_count", "", float64(count))
	f.samples = append(f.samples, collectedSample{start: start, end: len(f.buf)})
}

func (w *Writer) family(typ metricType, name, help string, labelNames []string) *Family {
	if f, ok := w.families[name]; ok {
		if f.typ != typ || !slices.Equal(f.labelNames, labelNames) {
			panic(fmt.Sprintf("metrics: collector writes %s as %s(%s) and as %s(%s)",
				name, f.typ, strings.Join(f.labelNames, ","), typ, strings.Join(labelNames, ",")))
		}
		return f
	}
	var reserved []string
	if typ == typeSummary {
		reserved = []string{"quantile"}
	}
	checkNames(typ, name, labelNames, reserved...)
	w.r.mu.Lock()
	owner, taken := w.r.names[name]
	w.r.mu.Unlock()
	if taken {
		panic(fmt.Sprintf("metrics: collector writes %s, a sample name registered by %s", name, owner))
	}
	f := &Family{name: name, help: help, typ: typ, labelNames: slices.Clone(labelNames)}
	if w.families == nil {
		w.families = make(map[string]*Family)
	}
	w.families[name] = f
	return f
}

// sorted returns the collected families by name, each with its samples
// sorted by label values.
func (w *Writer) sorted() []*Family {
	fams := make([]*Family, 0, len(w.families))
	for _, f := range w.families {
		slices.SortStableFunc(f.samples, func(a, b collectedSample) int {
			return slices.Compare(a.values, b.values)
		})
		fams = append(fams, f)
	}
	slices.SortFunc(fams, func(a, b *Family) int { return strings.Compare(a.name, b.name) })
	return fams
}

func (f *Family) appendTo(b []byte) []byte {
	b = appendHeader(b, f.name, f.help, f.typ)
	for _, s := range f.samples {
		b = append(b, f.buf[s.start:s.end]...)
	}
	return b
}
