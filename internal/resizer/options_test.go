package resizer

import (
	"net/url"
	"testing"
)

var testOptionLimits = optionLimits{MaxDimension: 8192, MaxOutputPixels: 40_000_000}

func TestParseOptions(t *testing.T) {
	def := defaultOptions()
	with := func(f func(*Options)) Options { o := def; f(&o); return o }
	cases := []struct {
		query   string
		want    Options
		wantErr bool
	}{
		{"", def, false},
		{"w=300", with(func(o *Options) { o.Width = 300 }), false},
		{"w=300&h=200&fit=contain&gravity=center&format=jpg&q=75&anim=keep&meta=keep&bg=%23102030",
			with(func(o *Options) {
				o.Width, o.Height, o.Fit, o.Gravity, o.Format, o.Quality = 300, 200, "contain", "centre", "jpeg", 75
				o.KeepAnimation, o.KeepMetadata, o.Background = true, true, [3]uint8{0x10, 0x20, 0x30}
			}), false},
		{"gravity=smart&format=avif", with(func(o *Options) { o.Gravity, o.Format = "smart", "avif" }), false},
		{"url=http%3A%2F%2Fx%2F&s=abc", def, false},
		{"w=0", def, true},
		{"w=8193", def, true},
		{"w=1000000", def, true},
		{"w=-1", def, true},
		{"w=+5", def, true},
		{"w=1e3", def, true},
		{"w=10&w=20", def, true},
		{"h=abc", def, true},
		{"q=0", def, true},
		{"q=101", def, true},
		{"fit=stretch", def, true},
		{"gravity=up", def, true},
		{"format=bmp", def, true},
		{"format=heif", def, true},
		{"anim=loop", def, true},
		{"meta=some", def, true},
		{"bg=fff", def, true},
		{"bg=gggggg", def, true},
		{"width=10", def, true},
		{"w=8000&h=8000", def, true},
	}
	for _, c := range cases {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatalf("%q: %v", c.query, err)
		}
		got, err := parseOptions(q, testOptionLimits)
		if (err != nil) != c.wantErr {
			t.Errorf("%q: err = %v, want error %v", c.query, err, c.wantErr)
			continue
		}
		if err == nil && got != c.want {
			t.Errorf("%q: got %+v, want %+v", c.query, got, c.want)
		}
		if err != nil {
			if ae, ok := err.(*apiError); !ok || ae.status != 400 || ae.code != codeInvalidOption {
				t.Errorf("%q: error %v, want a 400 invalid_option", c.query, err)
			}
		}
	}
}

// FuzzParseOptions: no query string makes the parser panic or accept
// options outside the limits, and accepted options survive a round trip
// through their canonical form (which the ETag hashes).
func FuzzParseOptions(f *testing.F) {
	f.Add("w=300&h=200&fit=cover&gravity=smart&format=auto&q=80")
	f.Add("w=1&h=8192&fit=inside&anim=keep&meta=keep&bg=000000")
	f.Add("url=http%3A%2F%2Fexample.com%2Fa.jpg&s=xyz&presets=all")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		o, err := parseOptions(q, testOptionLimits)
		if err != nil {
			return
		}
		if o.Width < 0 || o.Width > 8192 || o.Height < 0 || o.Height > 8192 || o.Quality < 0 || o.Quality > 100 ||
			int64(o.Width)*int64(o.Height) > testOptionLimits.MaxOutputPixels {
			t.Fatalf("%q: accepted out-of-range options %+v", raw, o)
		}
		q2, err := url.ParseQuery(o.String())
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", o.String(), err)
		}
		o2, err := parseOptions(q2, testOptionLimits)
		if err != nil || o2 != o {
			t.Fatalf("round trip of %q: %+v → %q → %+v, %v", raw, o, o.String(), o2, err)
		}
	})
}

func TestParseAccept(t *testing.T) {
	cases := map[string]accepted{
		"":                                  {},
		"*/*":                               {},
		"image/*":                           {},
		"image/avif,image/webp,*/*;q=0.8":   {avif: true, webp: true},
		"image/webp":                        {webp: true},
		"image/avif;q=0":                    {},
		"image/avif;q=0.0, image/webp;q=.5": {webp: true},
		"IMAGE/AVIF":                        {avif: true},
		"image/avif;q=x":                    {},
		",,;;garbage":                       {},
	}
	for h, want := range cases {
		if got := parseAccept(h); got != want {
			t.Errorf("%q: %+v, want %+v", h, got, want)
		}
	}
}
