package kiosk

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverShows(t *testing.T) {
	s := Secret("246810")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "code", s)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "code", s)
	for _, verb := range []string{"%s", "%v", "%x", "%q", "%#v", "%+v", "%d"} {
		fmt.Fprintf(&buf, verb+"\n", s)
	}
	fmt.Fprintln(&buf, s, []Secret{s})
	out := buf.String()
	for _, leak := range []string{"246810", "MjQ2ODEw", "323436383130"} {
		if strings.Contains(out, leak) {
			t.Fatalf("secret leaked as %q in:\n%s", leak, out)
		}
	}
}
