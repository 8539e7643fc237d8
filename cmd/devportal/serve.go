package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"kioskd/cmd/devportal/portal"
)

// serveConfig is what devportal serve runs with.
type serveConfig struct {
	dir, listen      string
	pageSize         int
	tlsCert, tlsKey  string
	pushCA           string
	verbose          bool
	ready            func(url string) // called once listening; tests use it
	shutdownDeadline time.Duration
}

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "-dir DIR [-listen 127.0.0.1:8080] [-page-size N] [-tls-cert F -tls-key F] [-push-ca F] [-v]", stderr)
	cfg := serveConfig{shutdownDeadline: 5 * time.Second}
	fs.StringVar(&cfg.dir, "dir", ".", "portal directory (devportal keygen's): keys, admin.token, portal.db")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:8080", "address to serve the device protocol and the admin API on")
	fs.IntVar(&cfg.pageSize, "page-size", portal.DefaultPageSize, "credentials per page of a full snapshot")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); plain HTTP is for loopback only")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "private key of -tls-cert (PEM)")
	fs.StringVar(&cfg.pushCA, "push-ca", "", "CA certificate (PEM) to trust for https push URLs, besides the system's")
	fs.BoolVar(&cfg.verbose, "v", false, "log every sync request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve: unexpected argument %q", fs.Arg(0))
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return usagef("serve: -tls-cert and -tls-key go together")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, stdout, stderr)
}

// serve runs the portal until ctx is done.
func serve(ctx context.Context, cfg serveConfig, stdout, stderr io.Writer) error {
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	pushClient := &http.Client{Timeout: portal.DefaultPushTimeout}
	if cfg.pushCA != "" {
		pem, err := os.ReadFile(cfg.pushCA)
		if err != nil {
			return fmt.Errorf("serve: push CA: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("serve: push CA %s holds no PEM certificate", cfg.pushCA)
		}
		pushClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	p, err := portal.Open(portal.Options{Dir: cfg.dir, PageSize: cfg.pageSize, Logger: log, PushClient: pushClient})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer p.Close()
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	} else if host, _, _ := net.SplitHostPort(cfg.listen); !isLoopbackHost(host) {
		log.Warn("serving plain HTTP on a non-loopback address; kiosks accept plain HTTP only to loopback (SPEC §6)", "listen", cfg.listen)
	}
	url := scheme + "://" + clientAddr(ln.Addr().(*net.TCPAddr))
	info := portal.ServeInfo{URL: url, PID: os.Getpid()}
	if cfg.tlsCert != "" {
		info.CertFile = abs(cfg.tlsCert)
	}
	if err := portal.WriteServeFile(cfg.dir, info); err != nil {
		ln.Close()
		return fmt.Errorf("serve: %w", err)
	}
	defer portal.RemoveServeFile(cfg.dir)

	srv := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	p.Start(ctx)
	errc := make(chan error, 1)
	go func() {
		if cfg.tlsCert != "" {
			errc <- srv.ServeTLS(ln, cfg.tlsCert, cfg.tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	fmt.Fprintf(stdout, "devportal serving %s on %s (portal key %s)\n", cfg.dir, url, pubText(p))
	if cfg.ready != nil {
		cfg.ready(url)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownDeadline)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	return nil
}

// clientAddr is the address a local client reaches a listener on: the
// loopback address when it listens on every address.
func clientAddr(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		if ip.To4() == nil && ip != nil {
			ip = net.IPv6loopback
		} else {
			ip = net.IPv4(127, 0, 0, 1)
		}
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
