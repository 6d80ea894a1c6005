package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/shipteam/ship/internal/engine"
)

// Codes the API adds to the engine's (engine.Code values are used as is).
const (
	CodeUnauthorized = "unauthorized"
	CodeUnavailable  = "unavailable"
	CodeTooMany      = "too_many_requests" // 429: a limit (event streams) is reached
)

// Error is an API error as the server sends it and the client returns it:
// {"error":{"code":"not_found","message":"..."}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return e.Message
}

type errorBody struct {
	Error *Error `json:"error"`
}

// statusOf maps an engine code to the HTTP status the API answers with.
func statusOf(code engine.Code) int {
	switch code {
	case engine.CodeInvalid:
		return http.StatusBadRequest
	case engine.CodeNotFound:
		return http.StatusNotFound
	case engine.CodeConflict:
		return http.StatusConflict
	case engine.CodeLocked:
		return http.StatusLocked
	case engine.CodeDenied:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// publicError turns any error into what the caller may see. Engine errors
// keep their code and user message; anything else is "internal" and its
// detail goes only to the log, tagged with the request id.
func publicError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var ee *engine.Error
	if errors.As(err, &ee) && ee.Code != engine.CodeInternal {
		return &Error{Status: statusOf(ee.Code), Code: string(ee.Code), Message: ee.Message}
	}
	return &Error{Status: http.StatusInternalServerError, Code: string(engine.CodeInternal), Message: "internal error"}
}

func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	pe := publicError(err)
	if pe.Status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", RequestID(r.Context()), "err", err)
	}
	writeJSON(w, pe.Status, errorBody{Error: pe})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing left to tell it
}

func invalid(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: string(engine.CodeInvalid), Message: fmt.Sprintf(format, args...)}
}
