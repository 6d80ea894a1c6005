package slack

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	slackapi "github.com/slack-go/slack"
)

// maxBody bounds a request body; interaction payloads carry the whole
// message, which stays far below this.
const maxBody = 1 << 20

type ctxKey int

const formKey ctxKey = iota

// inbound is an authenticated request's form and where it came from.
type inbound struct {
	form       url.Values
	mattermost bool
}

// authenticate lets a request through only with a valid Slack signature or,
// for Mattermost, the configured token. Refusals are a bare 401 and a log
// line naming the reason, never the secret, token or signature.
func (b *Bot) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			b.refuse(w, r, "body unreadable or too large")
			return
		}
		form, formErr := url.ParseQuery(string(body))
		in := inbound{form: form}
		switch {
		case r.Header.Get("X-Slack-Signature") != "" || b.cfg.MattermostToken == "":
			if b.verifier == nil {
				b.refuse(w, r, "no signing secret configured")
				return
			}
			if err := b.verifier.Verify(r.Context(), r.Header, body); err != nil {
				b.refuse(w, r, err.Error())
				return
			}
		default:
			tok := form.Get("token")
			if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Token "); ok && tok == "" {
				tok = h
			}
			if formErr != nil || subtle.ConstantTimeCompare([]byte(tok), []byte(b.cfg.MattermostToken)) != 1 {
				b.refuse(w, r, "missing or wrong Mattermost token")
				return
			}
			in.mattermost = true
		}
		if formErr != nil {
			// Signed but not a form: answer like any other bad command.
			writeJSON(w, ephemeral(mrkdwnf("ship could not read this request: %s", formErr)))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), formKey, in)))
	})
}

func (b *Bot) refuse(w http.ResponseWriter, r *http.Request, reason string) {
	b.stats.unauthorized.Add(1)
	b.log.Warn("slack request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", reason)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

func writeJSON(w http.ResponseWriter, m any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

// serveCommand answers a slash command within Slack's 3 seconds.
func (b *Bot) serveCommand(w http.ResponseWriter, r *http.Request) {
	in := r.Context().Value(formKey).(inbound)
	f := in.form
	if f.Get("ssl_check") == "1" {
		// Slack checking the certificate of a slash command URL: no command.
		w.WriteHeader(http.StatusOK)
		return
	}
	sc := slashRequest{
		Command: f.Get("command"), Text: f.Get("text"),
		UserID: f.Get("user_id"), UserName: f.Get("user_name"),
		ChannelID: f.Get("channel_id"), ResponseURL: f.Get("response_url"),
		Mattermost: in.mattermost,
	}
	writeJSON(w, b.handleSlash(r.Context(), sc))
}

// serveInteraction acknowledges a button press at once; the work and any
// answer to the user follow asynchronously.
func (b *Bot) serveInteraction(w http.ResponseWriter, r *http.Request) {
	in := r.Context().Value(formKey).(inbound)
	if in.mattermost {
		// Buttons are Slack's: a press must carry Slack's signature. The
		// Mattermost token proves only "some Mattermost", not which user.
		b.refuse(w, r, "button presses are Slack-only and must be signed by Slack")
		return
	}
	p, err := decodeInteraction(in.form.Get("payload"))
	if err != nil {
		b.log.Info("interaction ignored", "err", err)
		if errors.Is(err, errNotOurs) {
			w.WriteHeader(http.StatusOK)
			return
		}
		writeJSON(w, ephemeral(mrkdwnf("ship could not read this button press: %s", err)))
		return
	}
	b.handlePress(p)
	w.WriteHeader(http.StatusOK)
}

// slashRequest is a slash command, whichever way it arrived.
type slashRequest struct {
	Command, Text    string
	UserID, UserName string
	ChannelID        string
	ResponseURL      string
	Mattermost       bool
}

func slashFromAPI(c slackapi.SlashCommand) slashRequest {
	return slashRequest{
		Command: c.Command, Text: c.Text, UserID: c.UserID, UserName: c.UserName,
		ChannelID: c.ChannelID, ResponseURL: c.ResponseURL,
	}
}
