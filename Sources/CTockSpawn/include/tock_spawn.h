#ifndef TOCK_SPAWN_H
#define TOCK_SPAWN_H
#include <stdint.h>
#include <sys/types.h>

/// Starts `path` with `argv` and `envp` in `cwd`, with no file descriptors but 0-2, in a new process group of its own (so the whole tree can be
/// signalled), with stdin from /dev/null, stdout and stderr on `output_fd`, an empty signal mask and every
/// signal at its default disposition (the parent ignores SIGTERM/SIGINT for its own handling; children must not
/// inherit that). Returns 0 and sets *pid, or an errno value (ENOENT, EACCES, ENOEXEC, ...).
int tock_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd, int output_fd);

/// waitpid() wrappers that decode the status macros Swift cannot import.
/// Returns 1 when the child has exited (fills exit_code or signal, the other is -1), 0 when it still runs, -1 on error.
int tock_wait(pid_t pid, int block, int *exit_code, int *signal);



/// A pollable fd that becomes readable when `pid` exits (pidfd_open), or -1 where the kernel lacks it.
int tock_pidfd_open(pid_t pid);

/// 1 when `pid` has exited but is not reaped yet (so its process group id cannot be reused), 0 while it runs.
int tock_has_exited(pid_t pid);

/// tock_has_exited with how: 1 when `pid` has exited, not reaped (fills exit_code or signal, the other -1), 0 while
/// it runs, -1 when it is not a child waiting to be reaped (reaped already, or never ours).
int tock_exit_status(pid_t pid, int *exit_code, int *signal);

/// pipe2(O_CLOEXEC [| O_NONBLOCK]); returns 0 or -1 with errno.
int tock_pipe(int fds[2], int nonblocking);

/// Starts the script guard: `path` (the tock executable) with `argv`. Its fd 3 is one end of a socket pair whose
/// other end (close-on-exec) goes to *worker_fd; its fd 4 is shared memory of `capacity` process group ids, mapped
/// for the worker at *slots (0: a free slot), whose descriptor (close-on-exec) the worker keeps in *memory_fd. In a
/// process group of its own, every signal at its default. Returns 0, or an errno value.
int tock_spawn_guard(pid_t *pid, const char *path, char *const argv[], int capacity, int *worker_fd,
                     int32_t **slots, int *memory_fd);

/// Starts the script guard again on the shared memory `memory_fd` from tock_spawn_guard (the previous guard is
/// gone): the process groups in it stay guarded. A new socket pair; the worker's end goes to *worker_fd.
int tock_respawn_guard(pid_t *pid, const char *path, char *const argv[], int memory_fd, int *worker_fd);

/// Puts a script's process group id in slot `index` of the shared memory (0 clears it): an atomic store.
void tock_guard_set(int32_t *slots, int index, pid_t group);

/// The guard itself: waits for end of file on `fd` (the worker is gone), then sends SIGTERM to each process group
/// in the shared memory `memory`, and SIGKILL to those left after `grace_ms`. With `cgroup` (the worker's cgroup
/// directory, whose children are its runs' cgroups; NULL: none), every process in it gets the SIGTERM too, and what
/// is left after the grace is killed with cgroup.kill; the directory and its children are then removed.
/// Returns how many groups it stopped.
int tock_guard_main(int fd, int memory, int grace_ms, const char *cgroup);

/// Opens `path` (relative) beneath the directory `root` for reading, close-on-exec, without following a symlink out
/// of it: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), or with `walk_only` (or where openat2 is missing,
/// ENOSYS) one component at a time with O_NOFOLLOW, refusing every symlink (ELOOP). 0 and *out, or an errno value:
/// EXDEV when the path leads out of `root`.
int tock_open_beneath(int root, const char *path, int walk_only, int *out);
/// open(path, O_PATH | O_DIRECTORY | O_CLOEXEC): a directory to open beneath, which needs no read permission on it
/// (O_PATH is not visible to Swift). The descriptor, or -1 with errno.
int tock_open_directory(const char *path);

/// What `tock_spawn_script` starts.
struct tock_spawn_request {
    /// The script, open (from tock_open_beneath): executed with execveat(fd, "", AT_EMPTY_PATH), so what was checked
    /// is what runs. It is the script's fd 3 (a `#!` interpreter reads the script from /dev/fd/3).
    int script_fd;
    char *const *argv;
    char *const *envp;
    /// The working directory (NULL: the worker's).
    const char *cwd;
    /// Becomes stdout and stderr; stdin is /dev/null.
    int output_fd;
    /// The run's cgroup directory: the script starts in it (clone3 CLONE_INTO_CGROUP). -1: none.
    int cgroup_fd;
    /// 1: a supervisor process between the worker and the script, the subreaper of all the script starts, which
    /// kills what is left when the script's main process exits (see tock_script.c).
    int subreaper;
    /// 1: setgroups(groups), setgid(gid), setuid(uid) before the exec (the worker must be root).
    int set_credentials;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int group_count;
};

/// Starts a script in a process group of its own with every signal at its default and an empty mask, no
/// descriptors but 0-3. Returns 0 with *pid (the child to wait for: the script, or its supervisor) and *group (the
/// script's process group id), or an errno value from the exec (ENOEXEC, EACCES, ETXTBSY, ...).
int tock_spawn_script(const struct tock_spawn_request *request, pid_t *pid, pid_t *group);

/// Writes 1 to cgroup.kill in the cgroup directory `directory`: SIGKILL to every process in it and below. 0 or errno.
int tock_cgroup_kill(int directory);
/// Sends `signal` to every process in the cgroup's cgroup.procs; how many, or -1.
int tock_cgroup_signal(int directory, int signal);
/// 1 while a process is in the cgroup or below it (cgroup.events), 0 when none, -1 when it cannot be read.
int tock_cgroup_populated(int directory);
/// Whether a child can be started straight into the cgroup `directory` (one that exits at once): 0, or an errno.
int tock_cgroup_probe(int directory);
/// Waits up to `timeout_ms` for the cgroup to be empty; returns what tock_cgroup_populated last said.
int tock_cgroup_wait_empty(int directory, int timeout_ms);

/// Removes each variable named in `names` from the environment and overwrites its bytes in place (/proc/PID/environ
/// shows the original block, which unsetenv alone leaves as it was). Returns how many it removed.
int tock_scrub_environment(const char *const names[], int count);
/// Overwrites a C string with zeros (an argument of the process's own argv, shown by /proc/PID/cmdline).
void tock_scrub_bytes(char *bytes);
/// prctl(PR_SET_DUMPABLE): 0 makes /proc/PID/environ, mem and ptrace out of reach of processes of the same user.
int tock_set_dumpable(int dumpable);
#endif
