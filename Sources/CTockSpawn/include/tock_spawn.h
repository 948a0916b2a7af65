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
/// in the shared memory `memory`, and SIGKILL to those left after `grace_ms`. Returns how many groups it stopped.
int tock_guard_main(int fd, int memory, int grace_ms);
#endif
