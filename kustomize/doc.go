// Package kustomize is the build stage of gitopsd: it turns a source
// snapshot (a directory at one revision) and an overlay path inside it into
// the Kubernetes objects to apply, in apply order. It runs kustomize
// in-process (sigs.k8s.io/kustomize/api/krusty) and never talks to the API
// server: the reconciler takes the objects from here to the server-side
// dry-run, the apply and the prune. `gitopsd build` prints Result.YAML.
//
// The flow is source -> snapshot -> Builder.Build (in a worker process) ->
// Result (objects, YAML, hash) -> reconciler.
//
// # Safety
//
// A snapshot is content from a git repository, so a build treats it as
// untrusted (docs/design.md, "Build isolation"):
//
//   - Every build runs in a worker process: this binary re-executed with
//     WorkerArg (main calls ServeWorker), with memory, CPU and wall-clock
//     limits, no inherited environment, a private temporary directory, and,
//     unless remote bases are allowed, a seccomp filter that refuses
//     sockets and exec. It is killed when its context ends. A limit hit is
//     a *LimitError naming the bound.
//   - kustomize sees the snapshot through a read-only file system that
//     resolves every path, symlinks included, and refuses any that leads
//     outside the root, and any special file (FIFO, socket, device) by its
//     type before opening it. Errors name the file relative to the root.
//   - Each file is checked before kustomize parses it: size, total read,
//     YAML depth and alias expansion, and the object count (bounds.go).
//   - Go plugins, exec and container KRM functions and helm are off.
//   - Remote references are refused early, naming the field, unless
//     Options.AllowRemoteBases; the sandbox is what enforces it.
//   - Error messages carry no secret value of what was read (Redactor).
//   - A kustomize panic becomes an error.
//
// # Ordering
//
// Sort and Rank order objects for apply: Namespaces, CRDs, other
// cluster-scoped objects, then ServiceAccounts, Secrets, ConfigMaps, RBAC,
// Services, PVCs, workloads, everything else, and admission webhooks last.
// They are pure functions of the objects.
//
// # Empty builds
//
// A build that renders no objects is not an error here. Whether an empty
// build may prune is the reconciler's decision, and it refuses to.
package kustomize
