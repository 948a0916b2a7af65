#define _GNU_SOURCE
#include "tock_spawn.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tock_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd, int output_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    sigset_t empty, all;
    int rc;

    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) return rc;
    if ((rc = posix_spawnattr_init(&attributes)) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    sigemptyset(&empty);
    sigfillset(&all);
    if ((rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, output_fd, 1)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, output_fd, 2)) != 0) goto done;
    if (cwd != NULL && (rc = posix_spawn_file_actions_addchdir_np(&actions, cwd)) != 0) goto done;
    /* Nothing of ours beyond stdin/stdout/stderr: no database sockets, no pipes of other runs. */
    if ((rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3)) != 0) goto done;
    if ((rc = posix_spawnattr_setpgroup(&attributes, 0)) != 0) goto done;
    if ((rc = posix_spawnattr_setsigmask(&attributes, &empty)) != 0) goto done;
    if ((rc = posix_spawnattr_setsigdefault(&attributes, &all)) != 0) goto done;
    if ((rc = posix_spawnattr_setflags(&attributes,
            POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0) goto done;
    rc = posix_spawn(pid, path, &actions, &attributes, argv, envp);
done:
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return rc;
}

int tock_wait(pid_t pid, int block, int *exit_code, int *signal) {
    int status = 0;
    pid_t rc;
    do {
        rc = waitpid(pid, &status, block ? 0 : WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;
    if (rc == 0) return 0;
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    *signal = WIFSIGNALED(status) ? WTERMSIG(status) : -1;
    return 1;
}

#include <sys/syscall.h>
#include <unistd.h>

int tock_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

int tock_has_exited(pid_t pid) {
    siginfo_t info;
    info.si_pid = 0;
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return -1;
    return info.si_pid == pid ? 1 : 0;
}

int tock_pipe(int fds[2], int nonblocking) {
    return pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
}

#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

extern char **environ;

int tock_spawn_guard(pid_t *pid, const char *path, char *const argv[], int *worker_fd) {
    int fds[2];
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    sigset_t empty, all;
    int rc;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return errno;
    /* The guard's end becomes its fd 3: dup2 onto itself would keep close-on-exec set, so never start from 3. */
    if (fds[1] == 3) {
        int moved = fcntl(fds[1], F_DUPFD_CLOEXEC, 4);
        if (moved < 0) { rc = errno; close(fds[0]); close(fds[1]); return rc; }
        close(fds[1]);
        fds[1] = moved;
    }
    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) goto fail_fds;
    if ((rc = posix_spawnattr_init(&attributes)) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        goto fail_fds;
    }
    sigemptyset(&empty);
    sigfillset(&all);
    if ((rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, fds[1], 3)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_addclosefrom_np(&actions, 4)) != 0) goto done;
    /* A group of its own: a terminal's Ctrl-C or a kill of the worker's group does not reach it. */
    if ((rc = posix_spawnattr_setpgroup(&attributes, 0)) != 0) goto done;
    if ((rc = posix_spawnattr_setsigmask(&attributes, &empty)) != 0) goto done;
    if ((rc = posix_spawnattr_setsigdefault(&attributes, &all)) != 0) goto done;
    if ((rc = posix_spawnattr_setflags(&attributes,
            POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0) goto done;
    rc = posix_spawn(pid, path, &actions, &attributes, argv, environ);
done:
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(fds[1]);
    if (rc != 0) { close(fds[0]); return rc; }
    *worker_fd = fds[0];
    return 0;
fail_fds:
    close(fds[0]);
    close(fds[1]);
    return rc;
}

void tock_guard_announce(int fd, char sign, pid_t group) {
    char line[32];
    int length = snprintf(line, sizeof line, "%c%d\n", sign, (int)group);
    /* Never blocks the worker and never raises SIGPIPE: a guard that is gone only costs the protection. */
    (void)send(fd, line, (size_t)length, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* The groups announced and not yet ended. A worker runs at most 1,000 scripts at once. */
#define GUARD_CAPACITY 4096

static int guard_alive(pid_t group) {
    return kill(-group, 0) == 0 || errno != ESRCH;
}

int tock_guard_main(int fd, int grace_ms) {
    static pid_t groups[GUARD_CAPACITY];
    int count = 0;
    char buffer[4096];
    char line[32];
    int line_length = 0;
    struct sigaction ignore;

    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    /* Only the end of the worker (end of file on fd) ends the guard. */
    sigaction(SIGINT, &ignore, NULL);
    sigaction(SIGTERM, &ignore, NULL);
    sigaction(SIGHUP, &ignore, NULL);
    sigaction(SIGPIPE, &ignore, NULL);
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (buffer[i] != '\n') {
                if (line_length < (int)sizeof line - 1) line[line_length++] = buffer[i];
                continue;
            }
            line[line_length] = '\0';
            line_length = 0;
            pid_t group = (pid_t)atoi(line + 1);
            if (group <= 1) continue;
            if (line[0] == '+') {
                if (count < GUARD_CAPACITY) groups[count++] = group;
            } else if (line[0] == '-') {
                for (int j = 0; j < count; j++) {
                    if (groups[j] == group) { groups[j] = groups[--count]; break; }
                }
            }
        }
    }
    if (count == 0) return 0;
    /* The worker is gone with scripts still running: stop them as a timeout would, SIGTERM then SIGKILL. */
    for (int j = 0; j < count; j++) kill(-groups[j], SIGTERM);
    for (int waited = 0; waited < grace_ms; waited += 50) {
        int left = 0;
        for (int j = 0; j < count; j++) left += guard_alive(groups[j]);
        if (left == 0) return count;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    for (int j = 0; j < count; j++) kill(-groups[j], SIGKILL);
    return count;
}
