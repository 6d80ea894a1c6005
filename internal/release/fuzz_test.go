package release

import (
	"encoding/json"
	"testing"
)

// FuzzParseWeight: whatever the text, a weight that parses prints back to
// itself and JSON carries it unchanged.
func FuzzParseWeight(f *testing.F) {
	for _, s := range []string{"1%", "0.1", "12.25%", "100", "0.001", "1e2", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWeight(s)
		if err != nil {
			return
		}
		if w < 0 || w > 99999 {
			t.Fatalf("ParseWeight(%q) = %d out of range", s, w)
		}
		if back, err := ParseWeight(w.String()); err != nil || back != w {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, w, w.String(), back, err)
		}
		if !w.Valid() {
			return
		}
		b, _ := json.Marshal(w)
		var j Weight
		if err := json.Unmarshal(b, &j); err != nil || j != w {
			t.Fatalf("JSON %s -> %d, %v; want %d", b, j, err, w)
		}
	})
}

// FuzzCheckVersion: a version that passes is safe as a label value and in
// a shell word.
func FuzzCheckVersion(f *testing.F) {
	for _, s := range []string{"v2", "1.2.3+b", "v3$(id)", "<!channel>", "-x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckVersion(s) != nil {
			return
		}
		if len(s) > MaxVersionLen {
			t.Fatalf("%q is too long", s)
		}
		for _, r := range s {
			if !alnum(r) && r != '.' && r != '_' && r != '-' {
				t.Fatalf("%q passed with %q", s, r)
			}
		}
	})
}
