#ifndef TOCK_SPAWN_H
#define TOCK_SPAWN_H
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

/// pipe2(O_CLOEXEC [| O_NONBLOCK]); returns 0 or -1 with errno.
int tock_pipe(int fds[2], int nonblocking);

/// Starts the script guard: `path` (the tock executable) with `argv`, its only descriptor beyond 0-2 being fd 3,
/// one end of a socket pair whose other end (close-on-exec) goes to *worker_fd. In a process group of its own, every
/// signal at its default. Returns 0, or an errno value.
int tock_spawn_guard(pid_t *pid, const char *path, char *const argv[], int *worker_fd);

/// Tells the guard on `fd` that a script's process group started ('+') or ended ('-'). Never blocks or raises SIGPIPE.
void tock_guard_announce(int fd, char sign, pid_t group);

/// The guard itself: reads announcements from `fd` until end of file (the worker is gone), then sends SIGTERM to
/// each group still announced, and SIGKILL to those left after `grace_ms`. Returns how many groups it stopped.
int tock_guard_main(int fd, int grace_ms);
#endif
