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

/* A process group of its own (signalled as a whole, and out of reach of a terminal's Ctrl-C or a kill of ours), an
   empty signal mask and every signal at its default: the worker ignores SIGTERM and SIGINT for its own handling. */
static int own_group_default_signals(posix_spawnattr_t *attributes) {
    sigset_t empty, all;
    int rc;

    sigemptyset(&empty);
    sigfillset(&all);
    if ((rc = posix_spawnattr_setpgroup(attributes, 0)) != 0) return rc;
    if ((rc = posix_spawnattr_setsigmask(attributes, &empty)) != 0) return rc;
    if ((rc = posix_spawnattr_setsigdefault(attributes, &all)) != 0) return rc;
    return posix_spawnattr_setflags(attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

int tock_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd, int output_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int rc;

    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) return rc;
    if ((rc = posix_spawnattr_init(&attributes)) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    if ((rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, output_fd, 1)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, output_fd, 2)) != 0) goto done;
    if (cwd != NULL && (rc = posix_spawn_file_actions_addchdir_np(&actions, cwd)) != 0) goto done;
    /* Nothing of ours beyond stdin/stdout/stderr: no database sockets, no pipes of other runs. */
    if ((rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3)) != 0) goto done;
    if ((rc = own_group_default_signals(&attributes)) != 0) goto done;
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

int tock_exit_status(pid_t pid, int *exit_code, int *signal) {
    siginfo_t info;
    info.si_pid = 0;
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return -1;
    if (info.si_pid != pid) return 0;
    *exit_code = info.si_code == CLD_EXITED ? info.si_status : -1;
    *signal = info.si_code == CLD_EXITED ? -1 : info.si_status;
    return 1;
}

int tock_pipe(int fds[2], int nonblocking) {
    return pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
}

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <dirent.h>

extern char **environ;

/* Moves *fd to a close-on-exec descriptor above `floor` if it is not already. 0, or an errno value. */
static int move_above(int *fd, int floor) {
    if (*fd > floor) return 0;
    int moved = fcntl(*fd, F_DUPFD_CLOEXEC, floor + 1);
    if (moved < 0) return errno;
    close(*fd);
    *fd = moved;
    return 0;
}

/* The guard's process on the shared memory `memory` (above fd 4): a new socket pair, whose one end becomes the
   guard's fd 3 and the other goes to *worker_fd; `memory` becomes its fd 4. */
static int spawn_guard_process(pid_t *pid, const char *path, char *const argv[], int memory, int *worker_fd) {
    int fds[2];
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int rc;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return errno;
    /* Above 4, so that the dup2 of the memory onto 4 does not overwrite it first. */
    if ((rc = move_above(&fds[1], 4)) != 0) goto fail;
    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) goto fail;
    if ((rc = posix_spawnattr_init(&attributes)) != 0) {
        posix_spawn_file_actions_destroy(&actions);
        goto fail;
    }
    /* They become the guard's fds 3 and 4 (dup2 of an fd onto itself would keep close-on-exec set). */
    if ((rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, fds[1], 3)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_adddup2(&actions, memory, 4)) != 0) goto done;
    if ((rc = posix_spawn_file_actions_addclosefrom_np(&actions, 5)) != 0) goto done;
    if ((rc = own_group_default_signals(&attributes)) != 0) goto done;
    rc = posix_spawn(pid, path, &actions, &attributes, argv, environ);
done:
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (rc != 0) goto fail;
    close(fds[1]);
    *worker_fd = fds[0];
    return 0;
fail:
    close(fds[0]);
    close(fds[1]);
    return rc;
}

int tock_spawn_guard(pid_t *pid, const char *path, char *const argv[], int capacity, int *worker_fd,
                     int32_t **slots, int *memory_fd) {
    int memory;
    void *mapped;
    int rc;

    memory = memfd_create("tock-script-guard", MFD_CLOEXEC);
    if (memory < 0 || ftruncate(memory, (off_t)capacity * (off_t)sizeof(int32_t)) != 0) {
        rc = errno;
        if (memory >= 0) close(memory);
        return rc;
    }
    mapped = mmap(NULL, (size_t)capacity * sizeof(int32_t), PROT_READ | PROT_WRITE, MAP_SHARED, memory, 0);
    if (mapped == MAP_FAILED) {
        rc = errno;
        close(memory);
        return rc;
    }
    if ((rc = move_above(&memory, 4)) != 0 || (rc = spawn_guard_process(pid, path, argv, memory, worker_fd)) != 0) {
        munmap(mapped, (size_t)capacity * sizeof(int32_t));
        close(memory);
        return rc;
    }
    *slots = (int32_t *)mapped;
    *memory_fd = memory;
    return 0;
}

int tock_respawn_guard(pid_t *pid, const char *path, char *const argv[], int memory_fd, int *worker_fd) {
    return spawn_guard_process(pid, path, argv, memory_fd, worker_fd);
}

void tock_guard_set(int32_t *slots, int index, pid_t group) {
    __atomic_store_n(&slots[index], (int32_t)group, __ATOMIC_RELEASE);
}

static int guard_alive(pid_t group) {
    return kill(-group, 0) == 0 || errno != ESRCH;
}

/* The worker's cgroup directory's children (its runs' cgroups): sends `signal` to every process in them. */
static void guard_signal_cgroups(int directory, int signal) {
    int copy = fcntl(directory, F_DUPFD_CLOEXEC, 0);
    DIR *entries = copy >= 0 ? fdopendir(copy) : NULL;
    if (entries == NULL) return;
    rewinddir(entries);  /* a dup shares the offset another scan may have left at the end */
    for (struct dirent *entry; (entry = readdir(entries)) != NULL;) {
        if (entry->d_type != DT_DIR || entry->d_name[0] == '.') continue;
        int run = openat(directory, entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (run < 0) continue;
        tock_cgroup_signal(run, signal);
        close(run);
    }
    closedir(entries);
}

/* Removes the runs' (empty) cgroups, then the worker's. */
static void guard_remove_cgroups(int directory, const char *path) {
    int copy = fcntl(directory, F_DUPFD_CLOEXEC, 0);
    DIR *entries = copy >= 0 ? fdopendir(copy) : NULL;
    if (entries != NULL) {
        rewinddir(entries);
        for (struct dirent *entry; (entry = readdir(entries)) != NULL;) {
            if (entry->d_type == DT_DIR && entry->d_name[0] != '.') unlinkat(directory, entry->d_name, AT_REMOVEDIR);
        }
        closedir(entries);
    }
    rmdir(path);
}

int tock_guard_main(int fd, int memory, int grace_ms, const char *cgroup) {
    struct stat info;
    struct sigaction ignore;
    char sink[256];
    int32_t *slots;
    int capacity;
    int count = 0;

    /* Started as /proc/self/exe, it would show as "exe" in ps and top. /proc/self/comm names the process (its main
       thread), where prctl(PR_SET_NAME) would name only the thread running this. */
    int comm = open("/proc/self/comm", O_WRONLY);
    if (comm >= 0) {
        (void)write(comm, "tock-guard", 10);
        close(comm);
    }
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    /* Only the end of the worker (end of file on fd) ends the guard. */
    sigaction(SIGINT, &ignore, NULL);
    sigaction(SIGTERM, &ignore, NULL);
    sigaction(SIGHUP, &ignore, NULL);
    sigaction(SIGPIPE, &ignore, NULL);
    if (fstat(memory, &info) != 0 || info.st_size <= 0) return -1;
    capacity = (int)(info.st_size / (off_t)sizeof(int32_t));
    slots = mmap(NULL, (size_t)info.st_size, PROT_READ, MAP_SHARED, memory, 0);
    if (slots == MAP_FAILED) return -1;
    /* The worker writes nothing here: this read returns only when the worker's end closes, at its exit or death.
       Each script's group is in the shared slots, so a script's start costs the worker no system call and the
       guard no wake-up. */
    for (;;) {
        ssize_t n = read(fd, sink, sizeof sink);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
    }
    pid_t groups[capacity > 0 ? capacity : 1];
    for (int j = 0; j < capacity; j++) {
        int32_t group = __atomic_load_n(&slots[j], __ATOMIC_ACQUIRE);
        if (group > 1) groups[count++] = (pid_t)group;
    }
    int cgroups = cgroup != NULL ? open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (count == 0 && (cgroups < 0 || tock_cgroup_populated(cgroups) != 1)) {
        if (cgroups >= 0) guard_remove_cgroups(cgroups, cgroup);
        return 0;
    }
    /* The worker is gone with scripts still running: stop them as a timeout would, SIGTERM then SIGKILL; in a
       cgroup, also what they started in another process group or session. */
    for (int j = 0; j < count; j++) kill(-groups[j], SIGTERM);
    if (cgroups >= 0) guard_signal_cgroups(cgroups, SIGTERM);
    for (int waited = 0; waited < grace_ms; waited += 50) {
        int left = 0;
        for (int j = 0; j < count; j++) left += guard_alive(groups[j]);
        if (cgroups >= 0 && tock_cgroup_populated(cgroups) == 1) left++;
        if (left == 0) break;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    for (int j = 0; j < count; j++) kill(-groups[j], SIGKILL);
    if (cgroups >= 0) {
        tock_cgroup_kill(cgroups);
        tock_cgroup_wait_empty(cgroups, 5000);
        guard_remove_cgroups(cgroups, cgroup);
        close(cgroups);
    }
    return count;
}
