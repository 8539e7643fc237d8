// Package sync speaks the portal protocol of SPEC §6 for kioskd: the wire
// types of sync documents, a streaming two-pass document reader, streaming
// Ed25519 verification of document bodies, and the one path that applies a
// verified document to the store, whether it was pulled, pushed or read
// from a file (SPEC §6.5). Syncer runs the kiosk's client loops — pull,
// event upload, heartbeat — and serialises every apply.
//
// Its name shadows the standard library's sync; callers import it under
// another name, such as portalsync.
//
// Documents may be hundreds of megabytes (a full snapshot of a million
// credentials), so nothing here holds a whole document or all its
// credentials in memory: bodies are verified as they stream, then read
// twice from a seekable source — once for the header fields, skipping the
// credentials, and once streaming the credentials one by one into the
// store.
package sync
