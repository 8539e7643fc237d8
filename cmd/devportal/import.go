package main

import (
	"context"
	"fmt"
	"io"

	"kioskd/cmd/devportal/portal"
	"kioskd/kiosk"
	portalsync "kioskd/sync"
)

func runImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("import", "-dir DIR -seed seed.toml [-json]", stderr)
	af := addAdminFlags(fs)
	seedPath := fs.String("seed", "", "seed file: holders and credentials in the clear (see examples/demo-seed.toml); rev and used are ignored")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := required(fs, "seed"); err != nil {
		return err
	}
	seed, err := loadSeed(*seedPath)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	spec := portal.ImportSpec{Revoked: seed.Revoked}
	for _, h := range seed.Holders {
		for _, sc := range h.Credentials {
			ic := portal.ImportCredential{
				ID: sc.ID, Kind: kiosk.Kind(sc.Kind), Secret: portal.SecretText(sc.Secret),
				Holder: kiosk.Holder{ID: h.ID, Role: kiosk.Role(h.Role), Name: h.Name},
				Status: kiosk.Status(sc.Status), Uses: sc.Uses, ValidFrom: sc.ValidFrom, ValidUntil: sc.ValidUntil,
				Doors: sc.Doors,
			}
			for _, w := range sc.Schedule {
				ic.Schedule = append(ic.Schedule, portalsync.WireWindow{Days: w.Days, From: w.From, To: w.To})
			}
			spec.Credentials = append(spec.Credentials, ic)
		}
	}
	return withAdmin(af, stderr, func(ctx context.Context, a portal.Admin) error {
		info, err := a.Import(ctx, spec)
		if err != nil {
			return fmt.Errorf("seed %s: %w", *seedPath, err)
		}
		if *af.jsonOut {
			return printJSON(stdout, info)
		}
		fmt.Fprintf(stdout, "imported %d credentials (%d new holders, %d revoked token ids) from %s\n",
			info.Credentials, info.Holders, info.Revoked, *seedPath)
		return nil
	})
}
