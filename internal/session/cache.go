package session

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// cache keeps live sessions in memory, so that checking a busy session costs no database round
// trip. It is only trusted while this replica's listener is connected (PostgreSQL LISTEN on the
// tenant and session channels): every change that ends a session or makes a copy of it wrong is
// notified there when it commits and drops the copy at once, on every replica. While the
// listener is down the cache is bypassed and empty, and each (re)connect empties it, because
// notifications sent meanwhile are lost. A copy also lives at most ttl, which bounds anything
// that is never notified (a row deleted by hand, a half-open listener connection that the
// listener's ping has not noticed yet).
//
// Entries are immutable: a hit returns the cached *store.Session itself (callers only read it),
// and a touch replaces the entry with a new copy.
type cache struct {
	ttl      time.Duration
	perShard int
	// trusted is true while the listener is connected and has emptied the cache since.
	trusted atomic.Bool
	// epoch changes whenever many entries may go stale at once (a tenant's change, a flush): a
	// lookup that read the store under an older epoch must not insert what it read, since the
	// notification that would have dropped it may already have been handled.
	epoch  atomic.Uint64
	shards [cacheShards]cacheShard
}

// cacheShards spreads the lock: a session's shard is the first byte of its id hash (uniform,
// being a SHA-256).
const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*cacheEntry
	// seq counts the entries of this shard dropped one by one (a session's notification), for
	// the same reason as the epoch, without making every sign-out anywhere block every insert.
	seq uint64
	_   [64]byte // keeps neighbouring shards' locks off one cache line
}

type cacheEntry struct {
	s        *store.Session
	loadedAt time.Time // when s was read from the store (a touch does not renew it)
	// touching is set by the one hit that writes the session's activity back, so concurrent
	// hits do not all write.
	touching atomic.Bool
}

// cacheMark is what a lookup remembers before it reads the store.
type cacheMark struct{ epoch, seq uint64 }

func newCache(ttl time.Duration, size int) *cache {
	c := &cache{ttl: ttl, perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = map[[32]byte]*cacheEntry{}
	}
	return c
}

func (c *cache) shard(key *[32]byte) *cacheShard { return &c.shards[key[0]%cacheShards] }

// get returns the key's entry, or nil. It takes a read lock and does not allocate.
func (c *cache) get(key *[32]byte) *cacheEntry {
	sh := c.shard(key)
	sh.mu.RLock()
	e := sh.m[*key]
	sh.mu.RUnlock()
	return e
}

// fresh reports whether e was read from the store less than ttl before now.
func (c *cache) fresh(e *cacheEntry, now time.Time) bool {
	age := now.Sub(e.loadedAt)
	return age >= 0 && age < c.ttl
}

// mark is taken before a lookup reads the store.
func (c *cache) mark(key *[32]byte) cacheMark {
	sh := c.shard(key)
	sh.mu.RLock()
	seq := sh.seq
	sh.mu.RUnlock()
	return cacheMark{epoch: c.epoch.Load(), seq: seq}
}

// put caches s, read from the store at loadedAt after m was taken, unless anything that may
// have changed it happened since. A full shard gives up an arbitrary entry (Go's map order).
func (c *cache) put(key *[32]byte, s *store.Session, loadedAt time.Time, m cacheMark) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !c.trusted.Load() || c.epoch.Load() != m.epoch || sh.seq != m.seq {
		return
	}
	if _, ok := sh.m[*key]; !ok && len(sh.m) >= c.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[*key] = &cacheEntry{s: s, loadedAt: loadedAt}
}

// replace swaps old for a copy with s, unless old was dropped meanwhile.
func (c *cache) replace(key *[32]byte, old *cacheEntry, s *store.Session) {
	sh := c.shard(key)
	sh.mu.Lock()
	if sh.m[*key] == old {
		sh.m[*key] = &cacheEntry{s: s, loadedAt: old.loadedAt}
	}
	sh.mu.Unlock()
}

// remove drops the entry e, if it is still the key's.
func (c *cache) remove(key *[32]byte, e *cacheEntry) {
	sh := c.shard(key)
	sh.mu.Lock()
	if sh.m[*key] == e {
		delete(sh.m, *key)
	}
	sh.mu.Unlock()
}

// forget removes the key's entry, whatever it is: the store said the session is over.
func (c *cache) forget(key *[32]byte) {
	sh := c.shard(key)
	sh.mu.Lock()
	delete(sh.m, *key)
	sh.mu.Unlock()
}

// drop forgets one session (its notification).
func (c *cache) drop(idHash []byte) {
	if len(idHash) != 32 {
		return
	}
	key := [32]byte(idHash)
	sh := c.shard(&key)
	sh.mu.Lock()
	delete(sh.m, key)
	sh.seq++
	sh.mu.Unlock()
}

// dropTenant forgets every session of a school (its state, credentials, setup or name changed).
func (c *cache) dropTenant(tenantID string) {
	c.epoch.Add(1)
	c.dropWhere(func(e *cacheEntry) bool { return e.s.TenantID == tenantID })
}

// flush forgets everything; trusted says whether the cache may be used afterwards.
func (c *cache) flush(trusted bool) {
	if !trusted {
		c.trusted.Store(false)
	}
	c.epoch.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
	if trusted {
		c.trusted.Store(true)
	}
}

// purge drops entries older than ttl, so memory shrinks back after a busy hour.
func (c *cache) purge(now time.Time) {
	c.dropWhere(func(e *cacheEntry) bool { return !c.fresh(e, now) })
}

func (c *cache) dropWhere(stale func(*cacheEntry) bool) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if stale(e) {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// len counts the entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
