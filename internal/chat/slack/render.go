package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shipteam/ship/internal/engine"
	"github.com/shipteam/ship/internal/release"
	slackapi "github.com/slack-go/slack"
)

// Action IDs of the release message's buttons.
const (
	ActionPromote  = "ship_promote"
	ActionAbort    = "ship_abort"
	ActionRollback = "ship_rollback"
)

// buttonValue is what a button carries back: which release it acts on.
type buttonValue struct {
	App     string `json:"app"`
	Env     string `json:"env"`
	Release int64  `json:"release"`
}

func (v buttonValue) encode() string {
	b, _ := json.Marshal(v)
	return string(b)
}

// maxBlockText stays under Block Kit's 3000-character limit per text object.
const maxBlockText = 2900

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func mrkdwn(m markup) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.MarkdownType, string(clipMarkup(m, maxBlockText)), false, false)
}

func plain(s string) *slackapi.TextBlockObject {
	return slackapi.NewTextBlockObject(slackapi.PlainTextType, clip(s, 150), true, false)
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func stepsText(steps []release.Weight) string {
	s := make([]string, len(steps))
	for i, w := range steps {
		s[i] = w.String()
	}
	return strings.Join(s, " → ")
}

func strategyText(r release.Release) markup { return esc(r.Plan()) }

var stateIcon = map[release.State]string{
	release.Pending: ":hourglass_flowing_sand:", release.Progressing: ":arrows_counterclockwise:",
	release.Paused: ":double_vertical_bar:", release.Promoting: ":rocket:",
	release.Succeeded: ":white_check_mark:", release.Aborted: ":no_entry:",
	release.RolledBack: ":leftwards_arrow_with_hook:", release.Failed: ":x:",
}

// stateText says where a release is, in one line.
func stateText(r release.Release) markup {
	icon := markup(stateIcon[r.State])
	switch r.State {
	case release.Progressing:
		step := ""
		if len(r.Steps) > 0 {
			step = fmt.Sprintf(", step %d of %d", r.Step+1, len(r.Steps))
		}
		return mrkdwnf("%s progressing: canary at %s%%%s", icon, r.Weight.Number(), step)
	case release.Paused:
		return mrkdwnf("%s paused at %s%%: waiting for Promote or Abort", icon, r.Weight.Number())
	case release.Promoting:
		return icon + " promoting to 100%"
	}
	s := mrkdwnf("%s %s", icon, strings.ReplaceAll(string(r.State), "_", " "))
	if r.Reason != "" {
		s += ": " + esc(r.Reason)
	}
	return s
}

// actorLabel shows "slack:U123 (alice)" as "alice" and anything else as is.
func actorLabel(a string) string {
	if i := strings.LastIndex(a, " ("); i > 0 && strings.HasSuffix(a, ")") {
		return a[i+2 : len(a)-1]
	}
	return a
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" }

// analysisText compares canary with stable in one line.
func analysisText(a *engine.Analysis) markup {
	if a == nil {
		return ""
	}
	s := mrkdwnf("canary %s errors (%d req), p99 %s ms · stable %s errors (%d req), p99 %s ms",
		pct(a.CanaryErrorRate), a.CanaryRequests, trimFloat(roundTo(a.CanaryP99Ms, 1)),
		pct(a.StableErrorRate), a.StableRequests, trimFloat(roundTo(a.StableP99Ms, 1)))
	if a.Verdict != "" {
		s += " → " + esc(a.Verdict)
		if a.Reason != "" {
			s += " (" + esc(a.Reason) + ")"
		}
	}
	return s
}

func roundTo(f float64, digits int) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', digits, 64), 64)
	return v
}

func trackText(name string, t engine.TrackView) markup {
	if t.Version == "" && t.Desired == 0 {
		return mrkdwnf("%s: none", name)
	}
	s := mrkdwnf("%s %s: %d/%d ready", name, t.Version, t.Ready, t.Desired)
	if t.Restarts > 0 {
		s += mrkdwnf(", %d restarts", t.Restarts)
	}
	if t.Failed {
		s += " — failed: " + esc(t.Reason)
	}
	return s
}

// releaseMessage renders the one channel message of a release. status may
// be nil, or describe a later release (then its numbers are not shown).
// timeline is plain text, one line each.
func releaseMessage(r release.Release, st *engine.AppStatus, timeline []string) message {
	title := mrkdwnf("%s %s → %s · release #%d", r.App, r.Version, r.Env, r.ID)
	text := mrkdwnf("%s: %s", title, stateText(r))
	blocks := []slackapi.Block{
		slackapi.NewSectionBlock(mrkdwn(mrkdwnf("*%s*\n%s", title, stateText(r))), nil, nil),
	}
	var fields []*slackapi.TextBlockObject
	fields = append(fields, mrkdwn("*Strategy*\n"+strategyText(r)))
	if r.FromVersion != "" {
		fields = append(fields, mrkdwn("*From*\n"+esc(r.FromVersion)))
	}
	if st != nil && (st.Release == nil || st.Release.ID == r.ID) && r.Active() {
		fields = append(fields,
			mrkdwn(mrkdwnf("*Weight*\n%s%% to canary", st.Weight.Number())),
			mrkdwn("*Instances*\n"+trackText("stable", st.Stable)+"\n"+trackText("canary", st.Canary)))
	}
	blocks = append(blocks, slackapi.NewSectionBlock(nil, fields, nil))
	if st != nil && st.Analysis != nil && (st.Release == nil || st.Release.ID == r.ID) {
		blocks = append(blocks, slackapi.NewSectionBlock(mrkdwn("*Canary vs stable*\n"+analysisText(st.Analysis)), nil, nil))
	}
	lines := []markup{mrkdwnf("Started by %s via %s · %s", actorLabel(r.Actor), r.Source, r.Created.UTC().Format("Jan 2 15:04 UTC"))}
	for _, l := range timeline {
		lines = append(lines, esc(l))
	}
	blocks = append(blocks, slackapi.NewContextBlock("", mrkdwnElements(lines)...))
	if btns := buttons(r); len(btns) > 0 {
		blocks = append(blocks, slackapi.NewActionBlock(fmt.Sprintf("ship_release_%d", r.ID), btns...))
	}
	return message{Text: string(text), Blocks: blocks}
}

func mrkdwnElements(lines []markup) []slackapi.MixedElement {
	// A context block takes at most 10 elements.
	if len(lines) > 10 {
		lines = append(lines[:1:1], lines[len(lines)-9:]...)
	}
	out := make([]slackapi.MixedElement, len(lines))
	for i, l := range lines {
		out[i] = mrkdwn(l)
	}
	return out
}

// buttons offers what makes sense in r's state: Promote and Abort while it
// runs, Rollback while it runs or once it succeeded.
func buttons(r release.Release) []slackapi.BlockElement {
	v := buttonValue{App: r.App, Env: r.Env, Release: r.ID}.encode()
	var out []slackapi.BlockElement
	if r.Active() && r.Kind != release.KindRollback {
		out = append(out, slackapi.NewButtonBlockElement(ActionPromote, v, plain("Promote")).WithStyle(slackapi.StylePrimary))
		out = append(out, slackapi.NewButtonBlockElement(ActionAbort, v, plain("Abort")).
			WithStyle(slackapi.StyleDanger).
			WithConfirm(slackapi.NewConfirmationBlockObject(
				plain("Abort this release?"),
				mrkdwn(mrkdwnf("The canary of %s %s gets no more traffic at once and release #%d ends as aborted.", r.App, r.Version, r.ID)),
				plain("Abort"), plain("Keep going")).WithStyle(slackapi.StyleDanger)))
	}
	if r.Active() || r.State == release.Succeeded {
		target := "the last good release"
		if r.FromVersion != "" {
			target = r.FromVersion
		}
		out = append(out, slackapi.NewButtonBlockElement(ActionRollback, v, plain("Rollback")).
			WithConfirm(slackapi.NewConfirmationBlockObject(
				plain("Roll back?"),
				mrkdwn(mrkdwnf("%s in %s goes back to %s, skipping canary steps.", r.App, r.Env, target)),
				plain("Roll back"), plain("Cancel"))))
	}
	return out
}

// status answers /ship status [app].
func (b *Bot) status(ctx context.Context, u chatUser, app, env string) message {
	if app == "" {
		return b.listApps(ctx, u)
	}
	st, err := b.statusOf(ctx, u.actor(), app, env)
	if err != nil {
		return ephemeral(b.errorTextFor(u, err))
	}
	return ephemeral(statusText(st))
}

func statusText(st engine.AppStatus) markup {
	var s mrkdwnBuilder
	s.printf("*%s* (%s)", st.App, st.Env)
	if st.Endpoint != "" {
		s.printf(" · %s", st.Endpoint)
	}
	s.printf("\n%s · %s · canary weight %s%%", trackText("stable", st.Stable), trackText("canary", st.Canary), st.Weight.Number())
	if r := st.Release; r != nil {
		s.printf("\nrelease #%d %s (%s) by %s: %s", r.ID, r.Version, strategyText(*r), actorLabel(r.Actor), stateText(*r))
	}
	if a := analysisText(st.Analysis); a != "" {
		s.printf("\n%s", a)
	}
	if l := st.Lock; l != nil {
		s.printf("\n:lock: locked by %s since %s: %s", actorLabel(l.Actor), l.Since.UTC().Format(time.RFC3339), l.Reason)
	}
	if st.Note != "" {
		s.printf("\n_%s_", st.Note)
	}
	return s.markup()
}

func (b *Bot) listApps(ctx context.Context, u chatUser) message {
	all, err := b.eng.List(ctx, u.actor())
	if err != nil {
		return ephemeral(engineErrorText(b, err))
	}
	if len(all) == 0 {
		return ephemeral("No apps yet.")
	}
	var s mrkdwnBuilder
	for i, st := range all {
		if i > 0 {
			s.printf("\n")
		}
		s.printf("• *%s* (%s): stable %s", st.App, st.Env, orNone(st.Stable.Version))
		if st.Canary.Version != "" {
			s.printf(", canary %s at %s%%", st.Canary.Version, st.Weight.Number())
		}
		if st.Release != nil && st.Release.Active() {
			s.printf(", release #%d %s", st.Release.ID, st.Release.State)
		}
		if st.Lock != nil {
			s.printf(" :lock:")
		}
	}
	return ephemeral(s.markup())
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (b *Bot) history(ctx context.Context, u chatUser, app, env string, limit int) message {
	if limit <= 0 || limit > 50 {
		limit = historyLimit
	}
	rels, err := b.eng.History(ctx, u.actor(), app, env, limit)
	if err != nil {
		return ephemeral(b.errorTextFor(u, err))
	}
	if len(rels) == 0 {
		return ephemeral(mrkdwnf("No releases of %s yet.", app))
	}
	var s mrkdwnBuilder
	s.printf("*%s*: last %d releases", app, len(rels))
	for _, r := range rels {
		s.printf("\n• #%d %s → %s (%s) by %s via %s, %s: %s", r.ID, r.Version, r.Env, r.Kind,
			actorLabel(r.Actor), r.Source, r.Created.UTC().Format("Jan 2 15:04 UTC"), stateText(r))
	}
	return ephemeral(s.markup())
}
