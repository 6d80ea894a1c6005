package release

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseWeightIsExactInBasisPoints(t *testing.T) {
	for in, want := range map[string]Weight{
		"0": 0, "1": 100, "1%": 100, "0.1%": 10, "0.01": 1, "12.5": 1250, "12.25%": 1225, "100": 10000, " 50% ": 5000, "999": 99900,
	} {
		got, err := ParseWeight(in)
		if err != nil || got != want {
			t.Errorf("ParseWeight(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "%", "0.001", "1.", ".5", "-1", "1e2", "NaN", "1,5", "1000", "12.345%", "1%%", "0x10"} {
		if w, err := ParseWeight(in); err == nil {
			t.Errorf("ParseWeight(%q) = %d, want an error", in, w)
		}
	}
}

func TestWeightPrintsBackTheSame(t *testing.T) {
	for w, want := range map[Weight]string{0: "0%", 1: "0.01%", 10: "0.1%", 100: "1%", 1250: "12.5%", 1225: "12.25%", 10000: "100%"} {
		if got := w.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(w), got, want)
		}
		back, err := ParseWeight(w.String())
		if err != nil || back != w {
			t.Errorf("ParseWeight(%q) = %d, %v; want %d", w.String(), back, err, w)
		}
	}
}

func TestWeightJSONIsAPercentAndRefusesWhatItCannotHold(t *testing.T) {
	b, err := json.Marshal(struct{ W []Weight }{[]Weight{100, 10, 1250}})
	if err != nil || string(b) != `{"W":[1,0.1,12.5]}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var w Weight
	for in, want := range map[string]Weight{`1`: 100, `0.1`: 10, `0.01`: 1, `12.5`: 1250, `100`: 10000, `0`: 0} {
		if err := json.Unmarshal([]byte(in), &w); err != nil || w != want {
			t.Errorf("unmarshal %s = %d, %v; want %d", in, w, err, want)
		}
	}
	// 0.001% would hold a canary at 0% for a day: refused, not rounded.
	for _, in := range []string{`0.001`, `-1`, `100.5`, `"1%"`, `1e9`, `null`} {
		w = 0
		if err := json.Unmarshal([]byte(in), &w); err == nil && in != `null` {
			t.Errorf("unmarshal %s = %d, want an error", in, w)
		}
	}
}

func TestWeightOfRoundsInstancesUp(t *testing.T) {
	for _, c := range []struct {
		w    Weight
		n    int
		want int
	}{{100, 2, 1}, {100, 100, 1}, {100, 101, 2}, {5000, 10, 5}, {10000, 3, 3}, {0, 5, 0}, {3333, 3, 1}, {3334, 3, 2}} {
		if got := c.w.Of(c.n); got != c.want {
			t.Errorf("%s of %d = %d, want %d", c.w, c.n, got, c.want)
		}
	}
}

func TestCheckWeights(t *testing.T) {
	if err := CheckWeights([]Weight{1, 100, 10000}, "steps"); err != nil {
		t.Fatal(err)
	}
	for _, ws := range [][]Weight{{0}, {10001}, {100, 100}, {500, 100}, {-1}} {
		if err := CheckWeights(ws, "steps"); err == nil {
			t.Errorf("CheckWeights(%v) passed", ws)
		}
	}
}

func TestCheckVersionIsOneRuleForEveryDoor(t *testing.T) {
	for _, v := range []string{"v2", "1.2.3", "1.4.0-rc.1", "main_3f2a9c1", "A", strings.Repeat("a", 63)} {
		if err := CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%q): %v", v, err)
		}
	}
	for _, v := range []string{
		"", "v3$(id>x)", "v2;id", "`id`", "<!channel>", "-v2", "v2-", ".v2", "v2.", "1.2.3+build5",
		"v2\u200b", "v\u202e2", "v2\n", "v 2", "v2/..", strings.Repeat("a", 64), "v2\x1b[31m", "ü",
	} {
		if err := CheckVersion(v); err == nil {
			t.Errorf("CheckVersion(%q) passed", v)
		}
	}
}

func TestCheckReasonKeepsOneLineOfPlainText(t *testing.T) {
	if got, err := CheckReason("  black friday: no deploys ✋ "); err != nil || got != "black friday: no deploys ✋" {
		t.Fatalf("CheckReason = %q, %v", got, err)
	}
	for _, s := range []string{"a\nb", "\x1b[2J\x1b[31mred", "rtl \u202e gnp.exe", "zero\u200bwidth", "bell\a", strings.Repeat("x", MaxReasonLen+1), "\xff"} {
		if got, err := CheckReason(s); err == nil {
			t.Errorf("CheckReason(%q) = %q, want an error", s, got)
		}
	}
}
