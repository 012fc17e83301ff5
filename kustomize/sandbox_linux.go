package kustomize

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sandbox confines a build worker (this process) before it reads any of
// the snapshot: resource limits, then, with remote bases off, a seccomp
// filter that refuses creating sockets and io_uring instances (the only
// ways to open a connection) and executing programs, so that no spelling
// of a URL in a kustomization can reach the network or run anything. The
// filter is installed on every thread of the process (TSYNC) and stays for
// its life; it needs no privilege (no_new_privs). See docs/design.md,
// "Build isolation".
func sandbox(opts Options) error {
	if err := setLimits(opts); err != nil {
		return err
	}
	// If the pod's memory limit is reached anyway, the kernel's OOM killer
	// takes the worker, not the daemon beside it. Raising one's own score
	// needs no privilege; where /proc is not writable the limits above
	// still hold.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	if opts.AllowRemoteBases {
		return nil
	}
	refuseNetwork()
	return denySyscalls(unix.SYS_SOCKET, unix.SYS_IO_URING_SETUP, unix.SYS_EXECVE, unix.SYS_EXECVEAT)
}

// addressSpaceSlack is added to MaxBuildMemory for the address-space
// limit: the Go runtime reserves about 1 GiB of address space it never
// touches (page summaries, arena index) before the first allocation.
const addressSpaceSlack = 2 << 30

// setLimits sets the worker's rlimits: CPU time (the kernel kills at it;
// counted from the request, after what the worker's start-up used),
// address space (an allocation beyond it fails at once), no core dump (it
// would hold the build's input), no files written unless remote bases are
// allowed (kustomize clones them).
func setLimits(opts Options) error {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return fmt.Errorf("getrusage: %w", err)
	}
	used := uint64(ru.Utime.Sec + ru.Stime.Sec + 1) // rounded up
	cpu := used + uint64(cpuLimit(opts).Seconds())
	mem := uint64(opts.MaxBuildMemory) + addressSpaceSlack
	limits := []struct {
		res int
		max uint64
	}{
		{unix.RLIMIT_CPU, cpu},
		{unix.RLIMIT_AS, mem},
		{unix.RLIMIT_CORE, 0},
	}
	if !opts.AllowRemoteBases {
		limits = append(limits, struct {
			res int
			max uint64
		}{unix.RLIMIT_FSIZE, 0})
	}
	for _, l := range limits {
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.max, Max: l.max}); err != nil {
			return fmt.Errorf("setrlimit %d: %w", l.res, err)
		}
	}
	return nil
}

// auditArch is the seccomp architecture of this build, for the filter's
// first check: a system call made through another ABI has other numbers.
var auditArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}

// x32SyscallBit marks the x32 ABI's system calls on amd64, whose numbers
// would otherwise pass as their 64-bit twins.
const x32SyscallBit = 0x40000000

// denySyscalls installs a seccomp filter that makes the system calls nrs
// fail with EACCES on every thread of the process, along with any system
// call of another architecture or ABI.
func denySyscalls(nrs ...uintptr) error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)
	}
	deny := uint8(len(nrs) + 5) // index of the deny instruction
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 0, Jf: deny - 2},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: x32SyscallBit, Jt: deny - 4, Jf: 0},
	}
	for i, nr := range nrs {
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(nr), Jt: deny - uint8(i) - 5})
	}
	prog = append(prog,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EACCES)})
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}

	// no_new_privs is per thread; TSYNC copies it to the others.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}

// workerProcAttr puts a worker in a process group of its own, so that
// killGroup reaches everything it started, and has the kernel kill it if
// the daemon dies first.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the process group pid leads.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
