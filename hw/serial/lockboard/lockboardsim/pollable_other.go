//go:build !unix

package lockboardsim

import "os"

// pollable returns f unchanged where there are no pseudo-terminals.
func pollable(f *os.File) (*os.File, error) { return f, nil }

// ClearExclusive does nothing where there are no pseudo-terminals.
func (s *Sim) ClearExclusive() error { return nil }
