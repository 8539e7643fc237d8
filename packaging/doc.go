// Package packaging holds kioskd's Debian packaging: the default
// /etc/kioskd/kioskd.toml, the maintainer scripts and the templates that
// scripts/build-deb.sh assembles into .deb packages. It has no code; its
// tests check that the packaged config says what it claims.
package packaging
