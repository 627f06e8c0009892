// Package vfs holds the file systems a goeryx guest sees, all implemented behind wazero's
// experimental sys.FS interface (github.com/tetratelabs/wazero/experimental/sys) so that they can
// be mounted with sysfs.FSConfig.WithSysFSMount.
//
//   - [Store] is the in-memory file tree behind /data and behind eryx.VfsStorage. It is
//     thread-safe, shared by every guest it is mounted in and by the host API, and capped by a
//     byte budget. [Store.FS] returns a mountable view of it.
//   - [HostDir] and [HostFile] are volumes: a host directory or a single host file.
//   - [Root] is a tiny read-only tree to mount at "/" that shows only the mount points.
//   - [NewWASIBuilder] / [InstantiateWASI] install wazero's WASI functions with one fix: ENOSPC.
//
// # Design choices
//
// One lock per Store. Every guest call and every host call takes the Store's mutex, so each host
// operation is atomic with respect to every guest, and concurrent writers cannot overshoot the
// budget. Guest handles refer to nodes (inodes), not paths: many handles on one file share its
// bytes, and a file that is unlinked while open keeps working until its last handle closes.
//
// Budget. The budget is the sum of the logical sizes of all files that still exist or are still
// open (an unlinked open file is charged until its last close, like a real disk, otherwise a
// guest could grow unlinked files without limit). It is checked before anything is allocated:
// a write at offset 2**40 is refused with ENOSPC without touching memory. File contents are kept in
// 64 KiB pages allocated only where data was written (holes cost nothing), so memory follows the
// bytes actually written, never the offsets. Writes are all-or-nothing: wazero's fd_write
// ignores short counts, so a write that does not fit fails whole. The number of entries (files
// and directories) is capped at [MaxEntries], and names and paths are limited to
// [MaxNameLen]/[MaxPathLen], so empty files cannot exhaust host memory either.
//
// ENOSPC. wazero v1.12's Errno set has no ENOSPC and its WASI layer maps unknown values to EIO.
// The views therefore return [ErrnoNoSpace] (ERANGE, which no wazero code path produces for the
// calls involved) and [NewWASIBuilder] rewrites WASI's ERANGE to ENOSPC in exactly the functions
// that can run out of space (fd_write, fd_pwrite, fd_filestat_set_size, fd_allocate, path_open,
// path_create_directory). The guest sees OSError(errno.ENOSPC) (51 on WASI, where 28 is EINVAL).
// With wazero's stock WASI module it would see OSError(68, 'Result not representable'), so the
// engine must instantiate WASI through this package. Host volumes map the host's
// ENOSPC/EDQUOT/EFBIG the same way. The host API returns syscall.ENOSPC (28 on Linux).
//
// Errors that become Python exceptions. Read-only mounts refuse changes with EACCES (CPython
// raises PermissionError for EACCES and EPERM, but plain OSError for EROFS). WASI preview 1 has
// no chmod: CPython's os.chmod succeeds without calling the file system, so FS.Chmod (which
// stores the mode in a Store and is a no-op on volumes) is only reachable from Go. Links are refused
// with EPERM ("Operation not permitted", what Linux reports on file systems without links);
// readlink of an existing path is EINVAL (not a symlink), as POSIX says. Removing or renaming
// the mount point itself is EPERM.
//
// Options (read-only, write filter) are the same for a Store view and for volumes, because
// scrub_files applies to rw volumes too.
//
// Directory listing. wazero synthesises "." and "..", so Readdir returns only real entries, in
// sorted order, with real inode numbers and types.
//
// Preopen probe. wazero opens each mount's root lazily with OpenFile(".", O_RDONLY, 0); that is
// the only caller in wazero v1.12 that passes perm 0 (path_open always passes 0o600), and any
// error other than ENOENT makes wazero panic. The views map every failure of that probe to
// ENOENT, and [HostFile] uses it to tell the preopen (which must be a directory, or every path
// under the mount fails with ENOTDIR) from the guest's own opens of the mount path (which must
// be the file).
//
// Single-file volumes. A wazero mount is a preopened directory, and wasi-libc resolves a path by
// the longest preopen prefix; a path equal to a preopen's name resolves to "." in that preopen.
// [HostFile] is therefore mounted at the file's own guest path (WithSysFSMount(v, "/etc/x.json")),
// and its "." is the file: open, stat, read, write, truncate and utime work, nothing beneath it
// exists (ENOTDIR) and no sibling is reachable. Mounting a one-entry directory at the parent
// would shadow whatever else lives there, so it is not done. [RootWithFiles] lists such a file
// as a regular file in its parent directory.
//
// Host volumes. [HostDir] is built on os.Root, which refuses ".." and symlinks that leave the
// directory, including absolute symlinks (reported to the guest as EACCES, PermissionError).
// Symlinks inside the tree are followed; Lstat and readdir report them as symlinks, and
// Readlink returns their target only when it is relative and stays inside. The guest cannot
// create links, and chmod is accepted but does not reach the host (a guest must not be able to
// make host files executable). [HostFile] keeps one descriptor open for its lifetime. Both have
// Check, which reports when the host path has vanished or been replaced since construction.
// Only regular files and directories are opened: a FIFO, socket or device in a volume can be
// listed, stat'ed and removed, but opening it is EACCES (PermissionError). Opening a FIFO blocks
// until a peer opens it, inside the guest's host call where no deadline reaches; so the type is
// checked with Stat before the open, and the open itself is O_NONBLOCK and checked again with
// fstat, for a file swapped in between. A volume whose host path is such a file is refused.
//
// Long operations. A guest read or write is one host call whatever its size (gigabytes, for
// b"x" * 2**30), and a Python loop of large writes passes few bytecode boundaries, where the
// engine otherwise notices deadlines. Every view therefore calls [Options].Poll at each read and
// write and between chunks of 4 MiB; the engine's Poll raises the interrupt at the deadline and
// panics to stop the guest after the grace period or on close. Each interpreter gets its own
// views ([Volume].View, [Store.FS]) bound to its Poll. A write stopped between chunks has its
// first chunks written, and the Store's byte accounting follows every chunk.
//
// Root. wazero allows a mount at "/" next to deeper mounts (each is its own preopen; wasi-libc
// picks the longest matching prefix), so [Root] can make "/" list exactly the mount points. A
// rename across two mounts fails with ENOSYS (wazero's choice; Linux says EXDEV).
package vfs
