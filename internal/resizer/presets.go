package resizer

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/shipteam/ship/internal/resize"
)

// Preset is one named output size of a social network. The table is data
// (presets.json), so updating a network's size is a one-line change.
type Preset struct {
	Name    string     `json:"name"`
	Network string     `json:"network"`
	Title   string     `json:"title"`
	Width   int        `json:"width"`
	Height  int        `json:"height"`
	Fit     resize.Fit `json:"fit"`
}

//go:embed presets.json
var presetsJSON []byte

var presetName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// loadPresets parses and checks the embedded table; a bad table is a build
// defect, caught by the tests.
func loadPresets(data []byte) ([]Preset, error) {
	var ps []Preset
	if err := json.Unmarshal(data, &ps); err != nil {
		return nil, fmt.Errorf("parse presets: %w", err)
	}
	seen := map[string]bool{}
	for i := range ps {
		p := &ps[i]
		if p.Fit == "" {
			p.Fit = "cover"
		}
		switch {
		case !presetName.MatchString(p.Name) || p.Name == "all":
			return nil, fmt.Errorf("preset %d: bad name %q", i, p.Name)
		case seen[p.Name]:
			return nil, fmt.Errorf("preset %q listed twice", p.Name)
		case p.Width < 1 || p.Height < 1 || p.Width > 8192 || p.Height > 8192:
			return nil, fmt.Errorf("preset %q: bad size %dx%d", p.Name, p.Width, p.Height)
		}
		if _, err := oneOf("fit", string(p.Fit), fits); err != nil {
			return nil, fmt.Errorf("preset %q: %w", p.Name, err)
		}
		seen[p.Name] = true
	}
	return ps, nil
}

// Presets returns the built-in table, in its listed order.
func Presets() []Preset {
	ps, err := loadPresets(presetsJSON)
	if err != nil {
		panic(err) // the embedded file is checked by TestPresetTable
	}
	return ps
}

// selectPresets resolves "a,b,c" or "all".
func selectPresets(all []Preset, list string) ([]Preset, error) {
	if list == "all" {
		return all, nil
	}
	if list == "" {
		return nil, newError(http.StatusBadRequest, codeInvalidOption, "presets: give a comma-separated list of preset names, or all")
	}
	byName := map[string]Preset{}
	for _, p := range all {
		byName[p.Name] = p
	}
	var out []Preset
	seen := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		p, ok := byName[n]
		if !ok {
			return nil, newError(http.StatusBadRequest, codeUnknownPreset, "unknown preset %q; GET /v1/presets lists them", truncate(n, 40))
		}
		if !seen[n] {
			out = append(out, p)
			seen[n] = true
		}
	}
	return out, nil
}

func findPreset(all []Preset, name string) (Preset, bool) {
	for _, p := range all {
		if p.Name == name {
			return p, true
		}
	}
	return Preset{}, false
}

// apply sets the preset's size on options parsed from the query.
func (p Preset) apply(o Options) Options {
	o.Width, o.Height, o.Fit = p.Width, p.Height, p.Fit
	return o
}
