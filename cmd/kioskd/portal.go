package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"kioskd/kiosk"
	"kioskd/kiosk/config"
	"kioskd/store"
	portalsync "kioskd/sync"
)

// portalLink is the daemon's link to the portal: the syncer (pull, upload,
// heartbeat) and, when configured, the push server.
type portalLink struct {
	syncer *portalsync.Syncer
	push   *http.Server
	ln     net.Listener
}

// newPortalLink builds the syncer and binds the push listener. It returns
// nil when no portal is configured.
func newPortalLink(cfg *config.Config, st *store.Store, eng *kiosk.Engine, clock *kiosk.Clock, started time.Time, log *slog.Logger) (*portalLink, error) {
	if cfg.Portal.URL == "" {
		return nil, nil
	}
	token, err := cfg.ReadToken()
	if err != nil {
		return nil, err
	}
	spool := filepath.Join(cfg.StateDir, "spool")
	s, err := portalsync.NewSyncer(portalsync.Config{
		URL:               cfg.Portal.URL,
		DeviceID:          cfg.DeviceID,
		Token:             token,
		PublicKey:         cfg.Portal.PublicKey,
		MaxDocumentBytes:  cfg.Portal.MaxDocumentBytes,
		SyncInterval:      cfg.Portal.SyncInterval,
		HeartbeatInterval: cfg.Portal.HeartbeatInterval,
		SpoolDir:          spool,
		Now:               clock.Now,
		Observe:           clock.Observe,
		RunCommand:        commandRunner(eng),
		Status:            heartbeatStatus(cfg, eng),
		Version:           version,
		Started:           started,
		Log:               log,
	}, portalsync.StoreSyncer(st))
	if err != nil {
		return nil, fmt.Errorf("portal sync: %w", err)
	}
	link := &portalLink{syncer: s}
	if cfg.Portal.PushListen == "" {
		return link, nil
	}
	tlsOn := cfg.Portal.TLSCertFile != ""
	if !tlsOn && !loopbackListen(cfg.Portal.PushListen) {
		return nil, fmt.Errorf("%s: portal.push_listen = %q: a push listener on a non-loopback address needs tls_cert_file and tls_key_file (SPEC §6: plain HTTP only on loopback)", cfg.Path, cfg.Portal.PushListen)
	}
	h := portalsync.NewPushHandler(portalsync.PushConfig{
		DeviceID:         cfg.DeviceID,
		PublicKey:        cfg.Portal.PublicKey,
		MaxDocumentBytes: cfg.Portal.MaxDocumentBytes,
		SpoolDir:         spool,
		Now:              clock.Now,
		Observe:          clock.Observe,
		Yield:            st.Yield,
		Log:              log,
	}, st, s)
	link.push = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if tlsOn {
		cert, err := tls.LoadX509KeyPair(cfg.Portal.TLSCertFile, cfg.Portal.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("push TLS certificate %s: %w", cfg.Portal.TLSCertFile, err)
		}
		link.push.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Portal.PushListen)
	if err != nil {
		return nil, fmt.Errorf("push listener %s: %w", cfg.Portal.PushListen, err)
	}
	if tlsOn {
		ln = tls.NewListener(ln, link.push.TLSConfig)
	}
	link.ln = ln
	return link, nil
}

// PushAddr returns the bound push address ("" without a push listener).
func (l *portalLink) PushAddr() string {
	if l == nil || l.ln == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// closeListener releases the push port if it is still open; Shutdown in
// run closes it otherwise. Safe to call twice.
func (l *portalLink) closeListener() {
	if l.ln != nil {
		_ = l.ln.Close()
	}
}

// run serves until ctx is done.
func (l *portalLink) run(ctx context.Context, log *slog.Logger) {
	done := make(chan struct{})
	if l.push != nil {
		go func() {
			defer close(done)
			if err := l.push.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("push server stopped", "err", err)
			}
		}()
	} else {
		close(done)
	}
	if err := l.syncer.Run(ctx); err != nil {
		log.Error("portal sync stopped", "err", err)
	}
	if l.push != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.push.Shutdown(sctx)
	}
	<-done
}

func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// commandRunner runs portal commands on the decision loop.
func commandRunner(eng *kiosk.Engine) func(context.Context, portalsync.Command) error {
	return func(ctx context.Context, c portalsync.Command) error {
		switch c.Type {
		case portalsync.CommandUnlock:
			return eng.Unlock(ctx, c.Door, kiosk.SourceRemote, map[string]any{"command": c.ID})
		default:
			return fmt.Errorf("command %s: unknown type %q", c.ID, c.Type)
		}
	}
}

// heartbeatStatus reports the inputs and doors for heartbeats.
func heartbeatStatus(cfg *config.Config, eng *kiosk.Engine) func() portalsync.HeartbeatStatus {
	return func() portalsync.HeartbeatStatus {
		var hs portalsync.HeartbeatStatus
		for _, in := range cfg.Inputs {
			hs.Inputs = append(hs.Inputs, portalsync.InputStatus{Name: in.Name, Type: in.Type, Connected: eng.Connected(in.Name)})
		}
		hs.Doors = eng.Doors()
		return hs
	}
}
