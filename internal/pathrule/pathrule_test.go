package pathrule

import "testing"

func TestPatternMatchesItsPathOrWhatLiesBelow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"/health", "/health", true},
		{"/health", "/health/", false},
		{"/health", "/healthz", false},
		{"/assets/", "/assets/app.css", true},
		{"/assets/", "/assets/img/a.png", true},
		{"/assets/", "/assets", false},
		{"/assets/", "/assets/", true}, // an empty last segment lies below
		{"/img/*.png", "/img/a.png", true},
		{"/img/*.png", "/img/a/b.png", false},
		{"/*/health", "/t1/health", true},
		{"/*/health", "/health", false},
	} {
		pt, err := Parse(tc.pattern, tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := pt.Match(Segments(tc.path)); got != tc.want {
			t.Errorf("%s matching %s: %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
	if (Pattern{}).Match(Segments("/")) || (Pattern{}).Match(Segments("/x")) {
		t.Error("the zero pattern matched")
	}
}

func TestParseRefusesWhatIsNotAPlainCleanPath(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		"", "health", "/", "//x", "/a//b", "/a/./b", "/a/../b", "/a/..", "/a b", "/a?b", "/a[b]", `/a\b`,
		"/a%2fb", "/a;b", "/a#b", "/a\x00b", "/a\x7fb", "/straße",
	} {
		if _, err := Parse(p, p); err == nil {
			t.Errorf("Parse(%q) accepted", p)
		}
	}
}
