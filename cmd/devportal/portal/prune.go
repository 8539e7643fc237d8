package portal

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pruneInterval is how often Start's background work prunes.
const pruneInterval = time.Minute

// commandKeep is how long delivered and expired commands stay listed.
const commandKeep = 24 * time.Hour

// Start starts the background work of a serving portal until ctx is done
// or Close: pushes (and one round of them at once, for changes made while
// the server was down) and pruning of old versions, tombstones and
// commands. Calls after the first do nothing.
func (p *Portal) Start(ctx context.Context) {
	if !p.push.start(ctx) {
		return
	}
	p.push.kickAll()
	p.push.wg.Add(1)
	go func() {
		defer p.push.wg.Done()
		t := time.NewTicker(pruneInterval)
		defer t.Stop()
		for {
			if err := p.prune(); err != nil {
				p.log.Error("prune", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-p.pushDone():
				return
			case <-t.C:
			}
		}
	}()
}

func (p *Portal) pushDone() <-chan struct{} {
	p.push.mu.Lock()
	defer p.push.mu.Unlock()
	return p.push.ctx.Done()
}

// prune forgets what no request can need any more: versions superseded
// more than SnapshotTTL ago, tombstones deleted more than TombstoneTTL ago
// (raising the floor below which cursors are 410 Gone), and commands older
// than a day.
func (p *Portal) prune() error {
	now := p.now()
	var versions, tombs, cmds int
	err := p.db.Update(func(tx *bolt.Tx) error {
		hist := tx.Bucket(bHistory)
		c := hist.Cursor()
		for k, v := c.First(); k != nil; {
			var h histRecord
			if err := decode(v, &h); err != nil {
				return err
			}
			if now.Sub(h.SupersededAt) > p.opts.SnapshotTTL {
				if err := c.Delete(); err != nil {
					return err
				}
				versions++
				k, v = c.Seek(k)
				continue
			}
			k, v = c.Next()
		}

		meta := tx.Bucket(bMeta)
		floor := getInt(meta, kFloor)
		ts := tx.Bucket(bTombstones)
		tc := ts.Cursor()
		for k, key := tc.First(); k != nil; k, key = tc.First() {
			rv := tx.Bucket(bCreds).Get(key)
			if rv != nil {
				r, err := decodeRec(rv)
				if err != nil {
					return err
				}
				if now.Sub(r.DeletedAt) <= p.opts.TombstoneTTL {
					break
				}
				if err := tx.Bucket(bCreds).Delete(key); err != nil {
					return err
				}
				if err := tx.Bucket(bCredIDs).Delete([]byte(r.Wire.ID)); err != nil {
					return err
				}
				if err := tx.Bucket(bChanges).Delete(u64(uint64(r.Wire.Rev))); err != nil {
					return err
				}
				floor = max(floor, r.Wire.Rev)
				tombs++
			}
			if err := ts.Delete(k); err != nil {
				return err
			}
		}
		if err := meta.Put(kFloor, u64(uint64(floor))); err != nil {
			return err
		}

		cb := tx.Bucket(bCommands)
		cc := cb.Cursor()
		for k, v := cc.First(); k != nil; {
			var r commandRecord
			if err := decode(v, &r); err != nil {
				return err
			}
			if now.Sub(r.Queued) > commandKeep {
				if err := cc.Delete(); err != nil {
					return err
				}
				cmds++
				k, v = cc.Seek(k)
				continue
			}
			k, v = cc.Next()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	if versions+tombs+cmds > 0 {
		p.log.Info("pruned", "versions", versions, "tombstones", tombs, "commands", cmds)
	}
	return nil
}
