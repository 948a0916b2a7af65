#define _GNU_SOURCE
#include "tock_spawn.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* ---- Opening a script beneath the scripts directory ------------------------------------------------------------ */

/* The careful walk for kernels without openat2: one component at a time, never following a symlink (so a symlink
   anywhere in the path is refused with ELOOP, even one that stays inside). */
static int open_walk(int root, const char *path, int *out) {
    char component[256];
    int directory = fcntl(root, F_DUPFD_CLOEXEC, 0);
    const char *p = path;
    if (directory < 0) return errno;
    for (;;) {
        while (*p == '/') p++;
        const char *end = strchr(p, '/');
        size_t length = end ? (size_t)(end - p) : strlen(p);
        if (length == 0 || length >= sizeof component) { close(directory); return length ? ENAMETOOLONG : ENOENT; }
        memcpy(component, p, length);
        component[length] = 0;
        p += length;
        while (*p == '/') p++;
        int last = *p == 0;
        if (strcmp(component, ".") == 0 && !last) continue;
        if (strcmp(component, "..") == 0) { close(directory); return EXDEV; }
        int next = openat(directory, component,
                          last ? (O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
                               : (O_PATH | O_NOFOLLOW | O_CLOEXEC));
        int saved = errno;
        close(directory);
        if (next < 0) return saved;
        if (last) { *out = next; return 0; }
        struct stat info;
        if (fstat(next, &info) != 0) { saved = errno; close(next); return saved; }
        if (S_ISLNK(info.st_mode)) { close(next); return ELOOP; }
        if (!S_ISDIR(info.st_mode)) { close(next); return ENOTDIR; }
        directory = next;
    }
}

int tock_open_beneath(int root, const char *path, int walk_only, int *out) {
    if (!walk_only) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        /* O_NONBLOCK: a FIFO planted in the directory does not hang the worker (it is refused as not a file). */
        how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        for (int attempt = 0; attempt < 8; attempt++) {
            long fd = syscall(SYS_openat2, root, path, &how, sizeof how);
            if (fd >= 0) { *out = (int)fd; return 0; }
            /* EAGAIN: a rename elsewhere raced the lookup; the kernel asks us to try again. */
            if (errno != EAGAIN) break;
        }
        if (errno != ENOSYS) return errno;
    }
    return open_walk(root, path, out);
}

int tock_open_directory(const char *path) {
    return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* ---- Starting a script ------------------------------------------------------------------------------------------ */

/* A fork without glibc's fork handlers (which take locks another thread of the worker may hold), optionally straight
   into a cgroup (CLONE_INTO_CGROUP: the child never runs a single instruction outside it). The child runs only
   system calls until it execs or exits. */
static pid_t raw_fork(int cgroup_fd) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags = CLONE_INTO_CGROUP;
        args.cgroup = (unsigned long long)cgroup_fd;
    }
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && errno == ENOSYS && cgroup_fd < 0) pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    return (pid_t)pid;
}

/* What a child reports on the report pipe: its tag and a value (a process id or an errno value). One write each,
   under PIPE_BUF, so they never interleave. */
struct report { int tag; int value; };
enum { REPORT_ERROR = 'E', REPORT_SCRIPT = 'P' };

static void report_write(int fd, int tag, int value) {
    struct report message = {tag, value};
    ssize_t n;
    do { n = write(fd, &message, sizeof message); } while (n < 0 && errno == EINTR);
}

static void all_signals_default(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int s = 1; s < 65; s++) sigaction(s, &action, NULL);  /* EINVAL for SIGKILL, SIGSTOP, glibc's own: fine */
}

/* The script's process: never returns. Everything here is a system call (async-signal-safe after a fork of a
   multithreaded process). */
static void exec_script(const struct tock_spawn_request *r, int report) {
    sigset_t empty;
    int rc;

    all_signals_default();
    /* Out of the way of 0-3 first, so no dup2 below overwrites one it still needs (a worker started with its stdio
       closed has its own descriptors there). */
    int moved = fcntl(report, F_DUPFD_CLOEXEC, 10);
    if (moved >= 0) report = moved;
    if (setpgid(0, 0) != 0) goto fail;
    int output = fcntl(r->output_fd, F_DUPFD_CLOEXEC, 10);
    int script = fcntl(r->script_fd, F_DUPFD_CLOEXEC, 10);
    /* Not close-on-exec: if it lands on 0-2 itself, dup2 onto itself keeps it as it is; above, close_range marks it. */
    int null = open("/dev/null", O_RDONLY);
    if (output < 0 || script < 0 || null < 0) goto fail;
    if (dup2(null, 0) < 0 || dup2(output, 1) < 0 || dup2(output, 2) < 0) goto fail;
    /* The script's file stays open as fd 3, without close-on-exec: executing a `#!` script from a descriptor hands
       the interpreter /dev/fd/3, which must still be open after the exec (a close-on-exec descriptor makes that
       exec fail with ENOENT). */
    if (dup2(script, 3) < 0) goto fail;
    /* Nothing of the worker's beyond 0-3: every other descriptor closes at the exec (the report pipe stays
       usable until then). */
    if (syscall(SYS_close_range, 4, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 4; fd < 65536; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (r->cwd != NULL && chdir(r->cwd) != 0) goto fail;
    if (r->set_credentials) {
        /* Raw system calls: they change this process alone, and the order matters (groups and gid while still
           root, uid last). */
        if (syscall(SYS_setgroups, (size_t)r->group_count, r->groups) != 0) goto fail;
        if (syscall(SYS_setresgid, r->gid, r->gid, r->gid) != 0) goto fail;
        if (syscall(SYS_setresuid, r->uid, r->uid, r->uid) != 0) goto fail;
    }
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    syscall(SYS_execveat, 3, "", r->argv, r->envp, AT_EMPTY_PATH);
fail:
    rc = errno;
    report_write(report, REPORT_ERROR, rc);
    _exit(127);
}

/* A decimal number at *p (advanced past it), or -1. No strtol: this runs in a fork of a multithreaded process. */
static long parse_number(const char **p) {
    long value = -1;
    while (**p >= '0' && **p <= '9') {
        value = (value < 0 ? 0 : value * 10) + (**p - '0');
        (*p)++;
    }
    return value;
}

static char *format_number(char *out, long value) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value > 0);
    while (n > 0) *out++ = digits[--n];
    *out = 0;
    return out;
}

/* This process's children, into `pids` (at most `capacity`); how many, or -1 when it cannot tell. From
   /proc/PID/task/PID/children, or where the kernel lacks it (CONFIG_PROC_CHILDREN) from every /proc/N/stat. Only
   system calls and a stack buffer: no malloc after a fork of a multithreaded process. */
static int list_children(pid_t self, pid_t *pids, int capacity) {
    char path[64], buffer[4096];
    char *end = path;
    int count = 0;
    memcpy(end, "/proc/", 6); end += 6;
    end = format_number(end, self);
    memcpy(end, "/task/", 6); end += 6;
    end = format_number(end, self);
    memcpy(end, "/children", 10);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buffer, sizeof buffer - 1);
        close(fd);
        if (n < 0) return -1;
        buffer[n] = 0;
        for (const char *p = buffer; *p && count < capacity;) {
            long pid = parse_number(&p);
            if (pid > 0) pids[count++] = (pid_t)pid;
            else p++;
        }
        return count;
    }
    int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0) return -1;
    for (;;) {
        long n = syscall(SYS_getdents64, proc, buffer, sizeof buffer);
        if (n <= 0) break;
        for (long offset = 0; offset < n;) {
            struct { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; }
                *entry = (void *)(buffer + offset);
            offset += entry->reclen;
            const char *name = entry->name;
            long pid = parse_number(&name);
            if (pid <= 0 || *name != 0 || count >= capacity) continue;
            char stat_path[48], stat[512];
            end = stat_path;
            memcpy(end, "/proc/", 6); end += 6;
            end = format_number(end, pid);
            memcpy(end, "/stat", 6);
            int stat_fd = open(stat_path, O_RDONLY | O_CLOEXEC);
            if (stat_fd < 0) continue;
            ssize_t length = read(stat_fd, stat, sizeof stat - 1);
            close(stat_fd);
            if (length <= 0) continue;
            stat[length] = 0;
            /* "pid (comm) state ppid ...": the command may hold anything, so from the last ')'. */
            const char *p = NULL;
            for (ssize_t j = length - 1; j >= 0; j--) if (stat[j] == ')') { p = stat + j + 1; break; }
            if (p == NULL) continue;
            while (*p == ' ') p++;
            while (*p && *p != ' ') p++;  /* the state */
            while (*p == ' ') p++;
            if (parse_number(&p) == self) pids[count++] = (pid_t)pid;
        }
    }
    close(proc);
    return count;
}

/* Kills every child of this process but `keep` (and reaps it), until none is left: each killed child's own children
   come to this process (a subreaper) and are killed in the next round. */
static void kill_children_but(pid_t keep) {
    pid_t self = (pid_t)syscall(SYS_getpid);
    pid_t children[512];
    for (int round = 0; round < 100000; round++) {
        int count = list_children(self, children, 512);
        int killed = 0;
        for (int j = 0; j < count; j++) {
            if (children[j] == keep) continue;
            kill(children[j], SIGKILL);
            while (waitpid(children[j], NULL, 0) < 0 && errno == EINTR) {}
            killed++;
        }
        if (killed == 0) return;
    }
}

/* The run's supervisor (subreaper containment): the script's parent, and the subreaper of everything the script
   starts, so a process that calls setsid() or double-forks still comes back to it, and to no other run's. When the
   script's main process exits, it kills what is left, then exits as the script did. It ignores the signals the
   worker and a terminal send (only the end of its script ends it). */
static void supervise(const struct tock_spawn_request *request, int report) {
    struct sigaction ignore;
    siginfo_t info;
    int status = 0;

    /* None of the worker's descriptors: its end of the guard's socket (the guard waits for it to close), its
       database connections, other runs' pipes. The output becomes 3, the script 4, the report pipe 5. */
    struct tock_spawn_request own = *request;
    const struct tock_spawn_request *r = &own;
    int output = fcntl(request->output_fd, F_DUPFD_CLOEXEC, 100);
    int file = fcntl(request->script_fd, F_DUPFD_CLOEXEC, 100);
    int reports = fcntl(report, F_DUPFD_CLOEXEC, 100);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (output < 0 || file < 0 || reports < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
        dup2(null, 2) < 0 || dup3(output, 3, O_CLOEXEC) < 0 || dup3(file, 4, O_CLOEXEC) < 0 ||
        dup3(reports, 5, O_CLOEXEC) < 0) {
        report_write(report, REPORT_ERROR, errno);
        _exit(127);
    }
    if (syscall(SYS_close_range, 6, ~0U, 0) != 0) {
        for (int fd = 6; fd < 65536; fd++) close(fd);
    }
    own.output_fd = 3;
    own.script_fd = 4;
    report = 5;

    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    prctl(PR_SET_NAME, "tock-run", 0, 0, 0);
    all_signals_default();
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    int ignored[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t j = 0; j < sizeof ignored / sizeof ignored[0]; j++) sigaction(ignored[j], &ignore, NULL);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    pid_t script = raw_fork(-1);
    if (script < 0) {
        report_write(report, REPORT_ERROR, errno);
        _exit(127);
    }
    if (script == 0) exec_script(r, report);
    report_write(report, REPORT_SCRIPT, (int)script);
    close(report);
    /* Orphans that end while the script runs are reaped as they go; the script itself is only looked at (WNOWAIT):
       kept a zombie until the rest is gone, its process group id cannot be reused while the worker may signal it. */
    for (;;) {
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) != 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (info.si_pid == script) break;
        while (waitpid(info.si_pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    kill(-script, SIGKILL);
    kill_children_but(script);
    while (waitpid(script, &status, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(status)) {
        /* The same end as the script, for the worker's wait status; no core file of this process. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        struct sigaction fallback;
        memset(&fallback, 0, sizeof fallback);
        fallback.sa_handler = SIG_DFL;
        sigaction(WTERMSIG(status), &fallback, NULL);
        kill((pid_t)syscall(SYS_getpid), WTERMSIG(status));
        _exit(128 + WTERMSIG(status));
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
}

int tock_spawn_script(const struct tock_spawn_request *r, pid_t *pid, pid_t *group) {
    int pipe_fds[2];
    sigset_t all, old;
    struct report message;
    int rc = 0;

    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return errno;
    /* No handler of the worker's may run in the child before it has reset them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t child = raw_fork(r->subreaper ? -1 : r->cgroup_fd);
    if (child == 0) {
        close(pipe_fds[0]);
        if (r->subreaper) supervise(r, pipe_fds[1]);
        exec_script(r, pipe_fds[1]);
    }
    rc = child < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pipe_fds[1]);
    if (rc != 0) {
        close(pipe_fds[0]);
        return rc;
    }
    /* Until end of file: the pipe closes at the script's exec (or its supervisor's report), or says why not. */
    pid_t script = r->subreaper ? 0 : child;
    for (;;) {
        ssize_t n = read(pipe_fds[0], &message, sizeof message);
        if (n < 0 && errno == EINTR) continue;
        if (n != (ssize_t)sizeof message) break;
        if (message.tag == REPORT_SCRIPT) script = (pid_t)message.value;
        if (message.tag == REPORT_ERROR) rc = message.value;
    }
    close(pipe_fds[0]);
    if (rc == 0 && script <= 0) rc = ECHILD;
    if (rc != 0) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
        return rc;
    }
    *pid = child;
    *group = script;
    return 0;
}

/* ---- cgroup v2 ------------------------------------------------------------------------------------------------ */

int tock_cgroup_kill(int directory) {
    int fd = openat(directory, "cgroup.kill", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int rc = write(fd, "1", 1) == 1 ? 0 : errno;
    close(fd);
    return rc;
}

int tock_cgroup_signal(int directory, int signal) {
    char buffer[4096], number[16];
    size_t held = 0;
    int count = 0;
    int fd = openat(directory, "cgroup.procs", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t j = 0; j < n; j++) {
            if (buffer[j] == '\n') {
                number[held] = 0;
                long pid = strtol(number, NULL, 10);
                if (pid > 1 && kill((pid_t)pid, signal) == 0) count++;
                held = 0;
            } else if (held < sizeof number - 1) {
                number[held++] = buffer[j];
            }
        }
    }
    close(fd);
    return count;
}

int tock_cgroup_populated(int directory) {
    char buffer[512];
    int fd = openat(directory, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return -1;
    buffer[n] = 0;
    return strstr(buffer, "populated 1") != NULL ? 1 : 0;
}

int tock_cgroup_wait_empty(int directory, int timeout_ms) {
    for (int waited = 0;; waited++) {
        int populated = tock_cgroup_populated(directory);
        if (populated <= 0) return populated;
        if (waited >= timeout_ms) return 1;
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* ---- The worker's own secrets ------------------------------------------------------------------------------------ */

extern char **environ;

int tock_scrub_environment(const char *const names[], int count) {
    int scrubbed = 0;
    for (int j = 0; j < count; j++) {
        size_t length = strlen(names[j]);
        for (;;) {
            char *entry = NULL;
            for (char **e = environ; e && *e; e++) {
                if (strncmp(*e, names[j], length) == 0 && (*e)[length] == '=') { entry = *e; break; }
            }
            if (entry == NULL) break;
            /* unsetenv takes the pointer out of environ; the bytes stay where they were (the original block, which
               /proc/PID/environ shows, or a copy setenv made): overwritten here. */
            unsetenv(names[j]);
            memset(entry, 0, strlen(entry));
            scrubbed++;
        }
    }
    return scrubbed;
}

void tock_scrub_bytes(char *bytes) {
    if (bytes) memset(bytes, 0, strlen(bytes));
}

int tock_set_dumpable(int dumpable) {
    return prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0) == 0 ? 0 : errno;
}

int tock_cgroup_probe(int directory) {
    pid_t child = raw_fork(directory);
    if (child < 0) return errno;
    if (child == 0) _exit(0);
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
    return 0;
}
