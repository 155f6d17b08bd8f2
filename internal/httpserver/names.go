package httpserver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/store"
)

// The launch context names what the user came from: the lesson's title, its classes and
// subjects (from the lesson's OneRoster class: the WebUntis Klassen are in its metadata, the
// subjects in "subjects"), the day and the time. What nothing can name (a period id, an
// examination id, a parameter we do not know) is left out rather than shown as a number; the
// raw context stays in /api/me.

// contextItem is one named line of the launch context: names as the platform gives them
// (Text), or words of the catalogs (Value).
type contextItem struct {
	Label i18n.Text
	Text  string
	Value i18n.Text
}

// launchContext says where the user opened the app from, and what of it can be named.
func (s *Server) launchContext(ctx context.Context, sess *store.Session) (i18n.Text, []contextItem) {
	l := sess.Launch
	var (
		items []contextItem
		entry = i18n.T("home.entry.menu")
	)
	switch {
	case l["lesson_id"] != "":
		entry = i18n.T("home.entry.lesson")
		cl, ok := s.lesson(ctx, sess)
		if ok && cl.Title != "" {
			entry = i18n.T("home.entry.lesson_named", "Lesson", cl.Title)
		}
		if when, ok := lessonTime(l["date"], l["start"], l["end"]); ok {
			items = append(items, contextItem{Label: i18n.T("home.context.time"), Value: when})
		}
		if ok {
			if names := klassenNames(cl, l["class_ids"]); len(names) > 0 {
				items = append(items, contextItem{Label: i18n.T("home.context.classes", "Count", len(names)), Text: strings.Join(names, ", ")})
			}
			if names := subjectNames(cl, l["subject_ids"]); len(names) > 0 {
				items = append(items, contextItem{Label: i18n.T("home.context.subjects", "Count", len(names)), Text: strings.Join(names, ", ")})
			}
			if cl.Location != "" {
				items = append(items, contextItem{Label: i18n.T("home.context.room"), Text: cl.Location})
			}
		}
	case l["exam_id"] != "":
		// The platform offers no way to look an examination up: it is not named.
		entry = i18n.T("home.entry.exam")
	}
	return entry, items
}

// lessonTime says the launch's day (2006-01-02) and times (15:04) in words: school-local, as
// every time of the platform is, so no zone is converted. What does not parse is left out.
func lessonTime(date, start, end string) (i18n.Text, bool) {
	d, err := time.Parse(time.DateOnly, date)
	hasDay := err == nil
	if _, err := time.Parse("15:04", start); err != nil {
		start = ""
	}
	if _, err := time.Parse("15:04", end); err != nil || start == "" {
		end = ""
	}
	switch {
	case hasDay && end != "":
		return i18n.T("home.context.when_range", "Day", i18n.Date(d), "Start", start, "End", end), true
	case hasDay && start != "":
		return i18n.T("home.context.when_start", "Day", i18n.Date(d), "Start", start), true
	case hasDay:
		return i18n.T("home.context.when_day", "Day", i18n.Date(d)), true
	case end != "":
		return i18n.T("home.context.when_times", "Start", start, "End", end), true
	}
	return i18n.Text{}, false
}

// klassenNames are the names of the launch's class ids (WebUntis Klassen) that the lesson's
// metadata names; ids it does not name are left out.
func klassenNames(cl platform.Class, ids string) []string {
	if ids == "" {
		return nil
	}
	known := map[string]string{}
	if ks, ok := cl.Metadata["klassen"].([]any); ok {
		for _, k := range ks {
			m, _ := k.(map[string]any)
			id, _ := m["id"].(string)
			name, _ := m["name"].(string)
			if id != "" && name != "" {
				known[id] = name
			}
		}
	}
	var out []string
	for _, id := range strings.Split(ids, ",") {
		if name, ok := known[strings.TrimSpace(id)]; ok {
			out = append(out, name)
		}
	}
	return out
}

// subjectNames are the lesson's subjects when the launch's subject id is the lesson's (its
// metadata's subjectId); OneRoster names subjects, not their ids, so another id is not named.
func subjectNames(cl platform.Class, ids string) []string {
	if ids == "" || len(cl.Subjects) == 0 {
		return nil
	}
	sid := fmt.Sprint(cl.Metadata["subjectId"])
	for _, id := range strings.Split(ids, ",") {
		if strings.TrimSpace(id) == sid {
			return cl.Subjects
		}
	}
	return nil
}

// rosterNames keeps the lessons looked up, per school, for a while: a lesson's title, Klassen
// and subjects change rarely, and the page is opened again and again from the same lesson.
type rosterNames struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[[2]string]cachedLesson
}

type cachedLesson struct {
	class platform.Class // zero SourcedID: the platform does not know it
	until time.Time
}

const (
	lessonNameTTL    = 10 * time.Minute
	maxCachedLessons = 10_000
)

func newRosterNames(now func() time.Time) *rosterNames {
	if now == nil {
		now = time.Now
	}
	return &rosterNames{now: now, m: map[[2]string]cachedLesson{}}
}

func (n *rosterNames) lesson(tenantID, id string) (platform.Class, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.m[[2]string{tenantID, id}]
	if !ok || n.now().After(c.until) {
		return platform.Class{}, false
	}
	return c.class, true
}

func (n *rosterNames) keepLesson(tenantID, id string, cl platform.Class) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.m) >= maxCachedLessons {
		clear(n.m) // bounded: a flood of made-up lesson ids cannot grow it
	}
	n.m[[2]string{tenantID, id}] = cachedLesson{class: cl, until: n.now().Add(lessonNameTTL)}
}
