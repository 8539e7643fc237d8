package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-json-experiment/json"

	"kioskd/kiosk"
)

// heartbeatBody is the heartbeat of SPEC §6.6; its fields are exactly the
// spec's.
type heartbeatBody struct {
	DeviceID    string             `json:"device_id"`
	Version     string             `json:"version"`
	UptimeS     int64              `json:"uptime_s"`
	Cursor      string             `json:"cursor"`
	Credentials int                `json:"credentials"`
	Backlog     int                `json:"backlog"`
	ClockSynced bool               `json:"clock_synced"`
	Inputs      []InputStatus      `json:"inputs"`
	Doors       []kiosk.DoorStatus `json:"doors"`
}

// heartbeatLoop sends a heartbeat at once and then every
// HeartbeatInterval (jittered ±10 %), running the commands of each
// answer, until ctx is done. A failed heartbeat is logged and the next one
// comes at the usual time: the interval is its back-off.
func (s *Syncer) heartbeatLoop(ctx context.Context) {
	for ctx.Err() == nil {
		cmds, err := s.heartbeat(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.update(func(st *SyncStatus) { st.HeartbeatError = err.Error() })
			lvl := slog.LevelWarn
			if errors.Is(err, ErrUnauthorized) {
				lvl = slog.LevelError
			}
			s.log.Log(ctx, lvl, "heartbeat failed", "err", err)
		} else {
			now, _ := s.now()
			s.update(func(st *SyncStatus) { st.LastHeartbeat, st.HeartbeatError = now, "" })
			s.RunCommands(ctx, cmds)
		}
		if !s.wait(ctx, "heartbeat", s.jitter(s.cfg.HeartbeatInterval), nil) {
			return
		}
	}
}

// heartbeat sends one heartbeat and returns the commands of the answer.
func (s *Syncer) heartbeat(ctx context.Context) ([]Command, error) {
	hb := heartbeatBody{
		DeviceID:    s.cfg.DeviceID,
		Version:     s.cfg.Version,
		UptimeS:     int64(time.Since(s.started) / time.Second),
		Credentials: s.st.Count(),
		Inputs:      []InputStatus{},
		Doors:       []kiosk.DoorStatus{},
	}
	_, hb.ClockSynced = s.now()
	st, err := s.st.SyncState()
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	hb.Cursor = st.Cursor
	if hb.Backlog, err = s.st.Backlog(); err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	if s.cfg.Status != nil {
		hs := s.cfg.Status()
		if hs.Inputs != nil {
			hb.Inputs = hs.Inputs
		}
		if hs.Doors != nil {
			hb.Doors = hs.Doors
		}
	}
	body, err := json.Marshal(&hb)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/heartbeat", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return nil, newStatusError("heartbeat", resp)
	}
	answer, err := readAnswer(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	cmds, err := parseCommands(answer)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	return cmds, nil
}

// parseCommands reads the answer to a heartbeat: an empty body, or
// {"commands": [Command, ...]} whose commands all have an id and a type.
func parseCommands(b []byte) ([]Command, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var a struct {
		Commands []Command `json:"commands"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadAnswer, err)
	}
	for i, c := range a.Commands {
		if c.ID == "" || c.Type == "" {
			return nil, fmt.Errorf("%w: commands[%d]: id and type are required", errBadAnswer, i)
		}
	}
	return a.Commands, nil
}
