package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-json-experiment/json"

	"kioskd/kiosk"
)

// maxUploadBackoff caps the wait between failed uploads (SPEC §6.4).
const maxUploadBackoff = 60 * time.Second

// maxAnswerBytes bounds the answer to an upload or a heartbeat.
const maxAnswerBytes = 1 << 20

// eventTimeFormat is RFC 3339 in UTC with nanoseconds always written, so
// every uploaded time has sub-second precision (SPEC §5).
const eventTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// wireEvent is an event as uploaded (SPEC §5).
type wireEvent struct {
	ID           string         `json:"id"`
	Seq          uint64         `json:"seq"`
	Time         string         `json:"time"`
	ClockSynced  bool           `json:"clock_synced"`
	Type         string         `json:"type"`
	Door         string         `json:"door,omitempty"`
	Input        string         `json:"input,omitempty"`
	CredentialID string         `json:"credential_id,omitempty"`
	HolderID     string         `json:"holder_id,omitempty"`
	Role         string         `json:"role,omitempty"`
	Reason       string         `json:"reason,omitempty"`
	Source       string         `json:"source,omitempty"`
	Detail       map[string]any `json:"detail,omitempty"`
}

func toWire(ev *kiosk.Event) wireEvent {
	return wireEvent{
		ID: ev.ID, Seq: ev.Seq, Time: ev.Time.UTC().Format(eventTimeFormat), ClockSynced: ev.ClockSynced,
		Type: ev.Type, Door: ev.Door, Input: ev.Input, CredentialID: ev.CredentialID, HolderID: ev.HolderID,
		Role: string(ev.Role), Reason: string(ev.Reason), Source: ev.Source, Detail: ev.Detail,
	}
}

// uploadLoop uploads the journal (SPEC §6.4): the oldest pending events
// first, at most MaxUploadBatch per request, acking what the portal
// accepted. With nothing pending it waits for the store to append (no
// polling); after a failure or a partial acceptance it retries with
// back-off from 1 s doubling to 60 s (or the portal's Retry-After). The
// journal is the queue, so delivery is at least once across restarts.
func (s *Syncer) uploadLoop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		evs, err := s.st.Pending(0, MaxUploadBatch)
		if err == nil && len(evs) == 0 {
			s.idle()
			select {
			case <-ctx.Done():
				return
			case <-s.st.Appended():
			}
			continue
		}
		var retryAfter time.Duration
		accepted := 0
		if err == nil {
			accepted, err = s.upload(ctx, evs)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil && accepted == len(evs) {
			failures = 0
			now, _ := s.now()
			s.update(func(st *SyncStatus) { st.LastUpload, st.UploadError = now, "" })
			continue
		}
		failures++
		if err == nil {
			s.log.Info("portal accepted part of the events; the rest is sent again",
				"sent", len(evs), "accepted", accepted)
		} else {
			var se *statusError
			if errors.As(err, &se) {
				retryAfter = se.retryAfter
			}
			s.update(func(st *SyncStatus) { st.UploadError = err.Error() })
			lvl := slog.LevelWarn
			if errors.Is(err, ErrUnauthorized) {
				lvl = slog.LevelError
			}
			s.log.Log(ctx, lvl, "event upload failed", "err", err, "failures", failures)
		}
		d := s.backoff(failures, maxUploadBackoff)
		if retryAfter > d {
			d = retryAfter
		}
		if !s.wait(ctx, "upload", d, nil) {
			return
		}
	}
}

// upload posts one batch and acks the events the portal accepted. It
// returns how many of evs were accepted; ids the portal names that were
// not in the batch are ignored, so an event is never dropped unsent.
func (s *Syncer) upload(ctx context.Context, evs []kiosk.Event) (int, error) {
	wire := make([]wireEvent, len(evs))
	sent := make(map[string]bool, len(evs))
	for i := range evs {
		wire[i] = toWire(&evs[i])
		sent[evs[i].ID] = true
	}
	body, err := json.Marshal(struct {
		Events []wireEvent `json:"events"`
	}{wire})
	if err != nil {
		return 0, fmt.Errorf("upload: encode events: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/events", bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.do(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, newStatusError("upload", resp)
	}
	answer, err := readAnswer(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	ids, err := parseAccepted(answer)
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	ack := make([]string, 0, len(ids))
	for _, id := range ids {
		if sent[id] {
			ack = append(ack, id)
			delete(sent, id) // an id named twice counts once
		}
	}
	if err := s.st.Ack(ack); err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	return len(ack), nil
}

// readAnswer reads a small answer body, at most maxAnswerBytes.
func readAnswer(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if len(b) > maxAnswerBytes {
		return nil, fmt.Errorf("answer is larger than %d bytes", maxAnswerBytes)
	}
	return b, nil
}

// errBadAnswer is returned (wrapped) when the portal's answer to an upload
// or a heartbeat is not the JSON the protocol defines.
var errBadAnswer = errors.New("malformed portal answer")

// parseAccepted reads the answer to an upload: {"accepted": [ids]}.
func parseAccepted(b []byte) ([]string, error) {
	var a struct {
		Accepted *[]string `json:"accepted"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadAnswer, err)
	}
	if a.Accepted == nil {
		return nil, fmt.Errorf("%w: no accepted list", errBadAnswer)
	}
	return *a.Accepted, nil
}
