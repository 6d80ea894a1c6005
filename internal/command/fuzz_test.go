package command

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// roundTrip checks the invariants of any parse result: errors are
// *UsageErrors, and an accepted command prints to text that parses back
// to the same command.
func roundTrip(t *testing.T, c Command, err error, input string) {
	t.Helper()
	if err != nil {
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Fatalf("%q: error is %T, not *UsageError: %v", input, err, err)
		}
		if ue.Msg == "" {
			t.Fatalf("%q: empty message", input)
		}
		return
	}
	if _, ok := verbs[c.Verb]; !ok {
		t.Fatalf("%q: accepted unknown verb %q", input, c.Verb)
	}
	s := c.String()
	back, err := ParseText(s)
	if err != nil {
		t.Fatalf("%q -> %+v -> %q does not parse: %v", input, c, s, err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("%q -> %+v -> %q -> %+v", input, c, s, back)
	}
}

func FuzzParseText(f *testing.F) {
	for _, s := range []string{
		"deploy resizer v2 --canary 1%",
		`lock resizer --reason "db \"big\" migration"`,
		"deploy resizer v2 --steps 1,10,50,100 -e staging -w -o json",
		"logs resizer --version v2 -n 50 -f",
		"lock resizer —reason “don’t ship”",
		"scale resizer 10",
		"help rb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseText(s)
		roundTrip(t, c, err, s)
	})
}

// FuzzParse takes CLI arguments joined by NUL bytes.
func FuzzParse(f *testing.F) {
	f.Add("deploy\x00resizer\x00v2\x00--canary=0.5%")
	f.Add("lock\x00resizer\x00--reason\x00 a 'quoted' \"reason\" \\ ")
	f.Add("rollback\x00resizer\x00--to\x00v1\x00--reason\x00bad p99")
	f.Add("--\x00status")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		c, err := Parse(args)
		roundTrip(t, c, err, joined)
	})
}

// FuzzParseSlash takes the slash command and its text.
func FuzzParseSlash(f *testing.F) {
	f.Add("/deploy", "resizer v2 --canary 1%")
	f.Add("/ship", "lock resizer --reason 'a &amp; b'")
	f.Add("/rollback", "help")
	f.Fuzz(func(t *testing.T, cmd, text string) {
		c, err := ParseSlash(cmd, text)
		roundTrip(t, c, err, cmd+" "+text)
	})
}
