// Package kustomize is the build stage of gitopsd: it turns a source
// snapshot (a directory at one revision) and an overlay path inside it into
// the Kubernetes objects to apply, in apply order. It runs kustomize
// in-process (sigs.k8s.io/kustomize/api/krusty) and never talks to the API
// server: the reconciler takes the objects from here to the server-side
// dry-run, the apply and the prune. `gitopsd build` prints Result.YAML.
//
// The flow is source -> snapshot -> Builder.Build -> Result (objects, YAML,
// hash) -> reconciler.
//
// # Safety
//
// A snapshot is content from a git repository, so a build treats it as
// untrusted and enforces the DESIGN safety rule that the repo cannot reach
// outside itself:
//
//   - kustomize sees the snapshot through a read-only file system that
//     resolves every path, symlinks included, and refuses any that leads
//     outside the root: a symlink to /etc/passwd, a resource
//     "../../../outside.yaml", an absolute path elsewhere. The error names the
//     file relative to the root.
//   - Go plugins, exec and container KRM functions and helm are off: a
//     generator or transformer that needs them fails the build, and nothing
//     is run.
//   - Remote bases and resources (http(s) URLs, git repositories) are refused
//     before kustomize can fetch them, unless Options.AllowRemoteBases.
//   - Limits bound each file read, the total read and the rendered output.
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
