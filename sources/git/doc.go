// Package git is the git source of gitopsd: the first stage of the flow
// (source -> snapshot -> kustomize build -> apply). It keeps a shallow bare
// clone of a repository in a cache directory, follows one ref (a branch, a
// tag, the highest tag in a semver range, or a commit) and publishes each
// revision it sees as an immutable plain directory, <CacheDir>/snapshots/<sha>,
// which the kustomize stage builds from.
//
// A Source satisfies the reconciler's source interface: Fetch returns a
// Snapshot (directory and Flux-style revision such as "main@sha1:<hex>") and
// String a description safe to log. Each Fetch first lists the remote's refs
// and skips the fetch when the wanted commit is already published; branches
// are force-fetched so a rewritten history is followed. Credentials come
// from Auth (see AuthFromFiles); they never appear in errors, String or log
// values, and ssh requires known_hosts unless explicitly opted out.
//
// A repository, or the server in front of it, cannot make a Fetch exhaust
// memory or disk: Options.MaxFetchSize bounds the bytes each ls-remote and
// fetch receives, MaxObjectSize the inflated size of any one object (go-git
// holds an object whole in memory while it indexes a pack, and a 1 MiB pack
// can hold a 1 GiB file of zeros), MaxObjects the objects in a pack, and
// MaxSnapshotSize and MaxSnapshotFiles the bytes and entries written into a
// snapshot. A pack is checked as it streams in, before go-git's indexer sees
// each object: the count from the pack's header, each object's size from
// its own header (a delta's from the size of the object it makes), so an
// object over the bound is never inflated. A snapshot is checked from each
// blob's size before the file is written. Over a bound, Fetch fails at its
// stage (ls-remote, fetch or checkout) with an error naming the Options
// field and its value, such as "pack is over the 536870912-byte limit
// (MaxFetchSize)"; the cache keeps no partial pack or snapshot, the shallow
// list is restored, and the current snapshot stays current. Over http(s)
// every response byte counts, and MaxRefsSize also bounds the ref
// advertisement alone (go-git decodes it whole into memory); over ssh, git
// and file, go-git decodes the ref advertisement and the lines before the
// pack itself, with no hook to count them, so only Timeout bounds those.
//
// A server cannot stall a Fetch or fill its errors either. Timeout bounds
// each network operation whole: over http(s) the dial, the headers and
// every read of a body in progress, so a server that accepts and says
// nothing, stalls mid-body or trickles a byte a second fails it at
// Timeout; over ssh the connection itself expires then (go-git does the
// handshake without a deadline); over file, git-upload-pack is killed when
// go-git stops reading its pack, which it would otherwise wait on forever.
// An http error page (any non-2xx) is read to 4 KiB at most and reaches the
// error as a 200-character excerpt of printable ASCII. Every error is
// scrubbed at one point: whatever looks like a credential (an Authorization
// header, "Bearer ...", "token=...") and every credential the Source holds,
// in every spelling (as is, base64 of user:password, URL-escaped, quoted),
// so a 401 page that echoes the request's headers reveals nothing. A
// failed write to the cache (a full disk) fails at stage fetch naming the
// cache directory, leaves no partial pack, and the next Fetch retries.
//
// A corrupt cache cannot shrink a build. A snapshot is handed out only once
// this process has checked it against its commit: on first use (after a
// restart) every file's git blob hash, kind and executable bit, every
// symlink's target and the absence of any other entry are compared with
// the commit's tree, and every object the tree names must be in the clone;
// a snapshot being written is hashed as it is written. The clone's packs
// are checked against their checksums at its first use in the process.
// The result is remembered per commit, so a resync does not hash again. A
// snapshot that differs is written again from the clone; a clone that
// cannot produce the commit (a checksum mismatch, an object missing or
// unreadable) is removed and cloned again in the same Fetch. Either is
// logged once, at WARN, as "git cache repaired" with source, commit, what
// ("snapshot", "clone", "clone and snapshot") and reason. A repair that
// cannot be made (the server down while the clone must be fetched again)
// fails Fetch, naming what was being repaired, and returns no snapshot.
//
// The package never imports client-go. It returns data and errors for the
// reconciler to report; an optional Logger gets DEBUG detail, the "git
// cache repaired" WARN, and a WARN when an old snapshot cannot be removed.
package git
