package suggest

import (
	"strings"
	"testing"
)

func TestClosest(t *testing.T) {
	known := []string{"healthPath", "replicas", "strategy", "canary", "env"}
	for _, tc := range []struct{ got, want string }{
		{"health_path", "healthPath"}, // same letters ignoring case and '_'
		{"HEALTHPATH", "healthPath"},
		{"replcas", "replicas"},  // one deletion
		{"stratgey", "strategy"}, // transposition = 2 edits
		{"canry", "canary"},
		{"evn", ""},      // short word: 2 edits is too far
		{"enx", "env"},   // short word: 1 edit is close
		{"zzzzzzzz", ""}, // nothing close
		{strings.Repeat("a", 65), ""},
		{"", ""},
	} {
		if got := Closest(tc.got, known); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.got, got, tc.want)
		}
	}
}
