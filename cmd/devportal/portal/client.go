package portal

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

// Client is the admin API of a running portal, over HTTP. Its errors wrap
// the same sentinels as the Portal's (ErrNotFound, ErrInvalid,
// ErrConflict), mapped back from the HTTP status.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client of the admin API at base (e.g.
// "http://127.0.0.1:8080") with the admin token. A nil hc means a client
// with a 60 s timeout.
func NewClient(base, adminToken string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	return &Client{base: strings.TrimSuffix(base, "/"), token: adminToken, hc: hc}
}

// ServeInfo is the content of serve.json, which devportal serve writes in
// the portal directory while it runs, so that the command line finds it.
type ServeInfo struct {
	URL string `json:"url"`
	PID int    `json:"pid"`
	// CertFile is the server's TLS certificate when it serves HTTPS; the
	// command line trusts it.
	CertFile string `json:"cert_file,omitempty"`
}

// WriteServeFile writes dir's serve.json.
func WriteServeFile(dir string, info ServeInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return WriteSecret(filepath.Join(dir, ServeFile), append(b, '\n'), 0o600)
}

// RemoveServeFile removes dir's serve.json.
func RemoveServeFile(dir string) { removeServeFile(dir) }

// Dial returns a client of the server that runs on dir, found through its
// serve.json and admin.token.
func Dial(dir string) (*Client, error) {
	b, err := os.ReadFile(filepath.Join(dir, ServeFile))
	if err != nil {
		return nil, fmt.Errorf("find the running server: %w", err)
	}
	var info ServeInfo
	if err := json.Unmarshal(b, &info); err != nil || info.URL == "" {
		return nil, fmt.Errorf("find the running server: %s is not valid", filepath.Join(dir, ServeFile))
	}
	tok, err := ReadTokenFile(filepath.Join(dir, AdminTokenFile), "admin token")
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: time.Minute}
	if info.CertFile != "" {
		pem, err := os.ReadFile(info.CertFile)
		if err != nil {
			return nil, fmt.Errorf("find the running server: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("find the running server: %s holds no PEM certificate", info.CertFile)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	return NewClient(info.URL, tok, hc), nil
}

// do sends a request with a JSON body (in, when not nil) and decodes the
// JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("portal admin API: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	var sentinel error
	switch resp.StatusCode {
	case http.StatusNotFound:
		sentinel = ErrNotFound
	case http.StatusBadRequest:
		sentinel = ErrInvalid
	case http.StatusConflict:
		sentinel = ErrConflict
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("portal admin API: %s (is admin.token the server's?)", resp.Status)
	default:
		return nil, fmt.Errorf("portal admin API: %s: %s", resp.Status, e.Error)
	}
	// The server's message already names the sentinel; keep its text and
	// make errors.Is work.
	return nil, &remoteError{msg: e.Error, sentinel: sentinel}
}

// remoteError is an error answered by the server.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

var _ error = (*remoteError)(nil)

// Ping checks that the server answers with this admin token.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/admin/ping", nil, nil)
}

// AddHolder implements Admin.
func (c *Client) AddHolder(ctx context.Context, spec HolderSpec) (h Holder, err error) {
	return h, c.do(ctx, http.MethodPost, "/admin/holders", spec, &h)
}

// Holders implements Admin.
func (c *Client) Holders(ctx context.Context) (hs []Holder, err error) {
	return hs, c.do(ctx, http.MethodGet, "/admin/holders", nil, &hs)
}

// Issue implements Admin.
func (c *Client) Issue(ctx context.Context, spec CredentialSpec) (is Issued, err error) {
	return is, c.do(ctx, http.MethodPost, "/admin/credentials", spec, &is)
}

// IssueToken implements Admin.
func (c *Client) IssueToken(ctx context.Context, spec TokenSpec) (t IssuedToken, err error) {
	return t, c.do(ctx, http.MethodPost, "/admin/tokens", spec, &t)
}

// Credentials implements Admin.
func (c *Client) Credentials(ctx context.Context, f CredentialFilter) (cs []CredentialInfo, err error) {
	q := url.Values{}
	if f.Holder != "" {
		q.Set("holder", f.Holder)
	}
	if f.Deleted {
		q.Set("deleted", "1")
	}
	path := "/admin/credentials"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return cs, c.do(ctx, http.MethodGet, path, nil, &cs)
}

// SetStatus implements Admin.
func (c *Client) SetStatus(ctx context.Context, id string, status kiosk.Status) (ci CredentialInfo, err error) {
	body := map[string]kiosk.Status{"status": status}
	return ci, c.do(ctx, http.MethodPost, "/admin/credentials/"+url.PathEscape(id)+"/status", body, &ci)
}

// Delete implements Admin.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/admin/credentials/"+url.PathEscape(id), nil, nil)
}

// Revoke implements Admin.
func (c *Client) Revoke(ctx context.Context, cid string) error {
	return c.do(ctx, http.MethodPost, "/admin/revoked", map[string]string{"cid": cid}, nil)
}

// Tokens implements Admin.
func (c *Client) Tokens(ctx context.Context) (ts []TokenInfo, err error) {
	return ts, c.do(ctx, http.MethodGet, "/admin/tokens", nil, &ts)
}

// AddDevice implements Admin.
func (c *Client) AddDevice(ctx context.Context, spec DeviceSpec) (d AddedDevice, err error) {
	return d, c.do(ctx, http.MethodPost, "/admin/devices", spec, &d)
}

// Devices implements Admin.
func (c *Client) Devices(ctx context.Context) (ds []Device, err error) {
	return ds, c.do(ctx, http.MethodGet, "/admin/devices", nil, &ds)
}

// Unlock implements Admin.
func (c *Client) Unlock(ctx context.Context, device, door string) (cmd portalsync.Command, err error) {
	return cmd, c.do(ctx, http.MethodPost, "/admin/devices/"+url.PathEscape(device)+"/unlock", map[string]string{"door": door}, &cmd)
}

// Events implements Admin.
func (c *Client) Events(ctx context.Context, device string, limit int) (evs []json.RawMessage, err error) {
	path := "/admin/devices/" + url.PathEscape(device) + "/events"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	return evs, c.do(ctx, http.MethodGet, path, nil, &evs)
}

// Export implements Admin: the server writes the document, the client
// stores it as path and path+".sig".
func (c *Client) Export(ctx context.Context, device, path string) (ExportInfo, error) {
	resp, err := c.send(ctx, http.MethodGet, "/admin/devices/"+url.PathEscape(device)+"/export", nil)
	if err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	defer resp.Body.Close()
	sig := resp.Header.Get(portalsync.SignatureHeader)
	if sig == "" {
		return ExportInfo{}, errors.New("export: the answer is not signed")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, resp.Body)
	if err != nil {
		return ExportInfo{}, fmt.Errorf("export: receive: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	if err := portalsync.WriteSigFile(path, sig); err != nil {
		return ExportInfo{}, fmt.Errorf("export: %w", err)
	}
	info := ExportInfo{Path: path, Cursor: resp.Header.Get(hdrCursor), Bytes: n}
	info.Credentials, _ = strconv.Atoi(resp.Header.Get(hdrCredentials))
	info.Revoked, _ = strconv.Atoi(resp.Header.Get(hdrRevoked))
	return info, nil
}

// Import implements Admin.
func (c *Client) Import(ctx context.Context, spec ImportSpec) (info ImportInfo, err error) {
	return info, c.do(ctx, http.MethodPost, "/admin/import", spec, &info)
}
