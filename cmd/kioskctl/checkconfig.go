package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"kioskd/kiosk/config"
)

// problem is one config problem, for --json.
type problem struct {
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

// checkReply is check-config's --json output.
type checkReply struct {
	Path     string    `json:"path"`
	OK       bool      `json:"ok"`
	Problems []problem `json:"problems,omitempty"`
}

// runCheckConfig is `kioskctl check-config [PATH]`: it parses the config
// as kioskd does (config.Load) without starting anything, and prints OK or
// every problem with its line and key.
func runCheckConfig(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs, err := subFlags(g, "check-config", "check-config [PATH]",
		"Checks the config file (default: -config) as kioskd reads it, naming the line and key of\n"+
			"every problem. It needs no running kioskd. The secret files it names are checked by doctor.",
		stderr, args, nil)
	if err != nil {
		return err
	}
	path := g.configPath
	switch fs.NArg() {
	case 0:
	case 1:
		path = fs.Arg(0)
	default:
		return usagef("check-config: want at most one config file, got %d arguments", fs.NArg())
	}
	cfg, err := config.Load(path)
	if err != nil && !errors.Is(err, config.ErrConfig) {
		return err // the file cannot be read: no problems to list
	}
	reply := checkReply{Path: path, OK: err == nil}
	for _, ce := range configErrors(err) {
		reply.Problems = append(reply.Problems, problem{Line: ce.Line, Col: ce.Col, Key: ce.Key, Message: ce.Msg})
	}
	if err != nil && len(reply.Problems) == 0 {
		reply.Problems = []problem{{Message: err.Error()}}
	}
	if g.json {
		if err := printJSON(stdout, reply); err != nil {
			return err
		}
	} else if reply.OK {
		fmt.Fprintf(stdout, "OK %s: device %s, hardware %s, %d doors, %d inputs\n", path, cfg.DeviceID, cfg.Hardware, len(cfg.Doors), len(cfg.Inputs))
	} else {
		for _, ce := range configErrors(err) {
			fmt.Fprintln(stdout, ce.Error())
		}
		if len(configErrors(err)) == 0 {
			fmt.Fprintln(stdout, err)
		}
	}
	if !reply.OK {
		fmt.Fprintf(stderr, "kioskctl: %s: %d problem(s)\n", path, len(reply.Problems))
		return errProblems
	}
	return nil
}

// configErrors returns every *config.Error in err, which config.Load
// joins one per problem.
func configErrors(err error) []*config.Error {
	if err == nil {
		return nil
	}
	var ce *config.Error
	if errors.As(err, &ce) && err == error(ce) {
		return []*config.Error{ce}
	}
	var out []*config.Error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, configErrors(e)...)
		}
		return out
	}
	if u := errors.Unwrap(err); u != nil {
		return configErrors(u)
	}
	return nil
}
